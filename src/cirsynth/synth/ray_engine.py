"""The scale-out runner behind ``cirsynth synthesize --engine ray``: the local runner's stages as Ray Data operators.

The driver does what the local runner does before its first batch (inputs checked, output opened for resume, the
same batches of ``batch_size`` inputs), then streams the batches through actor pools (``map_batches`` with
``compute=ActorPoolStrategy(size=workers)``), each a callable class that loads its models once in ``__init__``:

1. ``CaptionPerturbStage``  load, caption, perturb  (CPU, or a small GPU share when a captioner runs)
2. ``InvertEditStage``      invert, edit            (the GPU stage)
3. ``FilterWriteStage``     filter, write the shard (a small GPU share for CLIP)

(three pools when workers have GPUs; on CPUs one pool, ``SynthesizeStage``, runs all three: see ``plan_pools``).

Each batch is one row of the Ray dataset and keeps its inputs together through every stage, so the models see the
same batches as in the local runner and give the same rows. The last stage writes the batch's rows as one manifest
shard named by the batch's input keys (``keyed_shard_name``, temp file + rename): whichever worker finishes a batch
writes it, a retried batch (a worker killed, Ray re-running its task) replaces its own shard instead of adding a
second, and a killed driver leaves only complete shards, so a rerun resumes like the local runner.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from cirsynth.data import TripletDataset, keyed_shard_name
from cirsynth.synth.pipeline import ClusterError, StageTimes, Summary, SynthConfig, Synthesizer, _Bars, _count, add_row

SMALL_SHARE = 0.1  # of a worker's GPU for each small-model pool (captioner, CLIP) beside the editor


@dataclass
class RayConfig:
    address: Optional[str] = None  # None: start a local cluster; "auto" or HOST:PORT: join a running one
    workers: int = 1  # actors in each stage pool
    gpus_per_worker: Optional[float] = None  # GPU per worker (<= 1; 0.5: two workers share one). None: 1 if the cluster has GPUs
    pools: str = "auto"  # split (a pool per stage) | fused (one pool) | auto: split when workers have GPUs


@dataclass
class _Batch:
    """One batch on its way through the stages (a row of the Ray dataset, pickled)."""

    keys: list[str]  # its input keys, in order: names its shard
    data: Any  # the inputs, then each stage's output
    times: StageTimes


def worker_runtime_env() -> dict[str, Any]:
    """A Ray ``runtime_env`` under which workers import this cirsynth.

    An installed cirsynth is on every worker's path already; a source checkout (``PYTHONPATH=src``) is not where a
    worker starts, so its folder goes on the workers' ``PYTHONPATH`` (absolute paths).
    """
    import cirsynth

    root = Path(cirsynth.__file__).resolve().parents[1]
    if root.name in ("site-packages", "dist-packages"):
        return {}
    paths = [str(root)] + [str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}


def connect(address: Optional[str]) -> bool:
    """Join the cluster at ``address`` ("auto", HOST:PORT), or start a local one; True when this call started Ray
    (the caller then shuts it down). A process already connected keeps its connection."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"runtime_env": worker_runtime_env(), "log_to_driver": True}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(include_dashboard=False, **kwargs)
    return True


def plan_pools(cfg: SynthConfig, rc: RayConfig, cluster: dict[str, float]) -> list[dict[str, Any]]:
    """The stage pools in order: each one's callable class (``cls``), and its actors' ``num_cpus``, ``num_gpus`` and
    ``device``.

    Split pools (``rc.pools`` "split"; "auto" when workers have GPUs): a worker is one actor of each pool, one CPU
    in all, and ``gpus_per_worker`` split between the editor and the small models (captioner or LLM perturber, CLIP;
    ``SMALL_SHARE`` each), so that one GPU holds one worker's models as in one local process and the CPU stages never
    hold a whole GPU. Fused
    ("fused"; "auto" on CPUs): one pool running every step, one CPU and ``gpus_per_worker`` per actor.

    Raises:
        ClusterError: settings the cluster cannot run (too few CPUs or GPUs, a GPU share over 1, CUDA without GPUs).
    """
    if rc.pools not in ("auto", "split", "fused"):
        raise ClusterError(f"pools must be auto, split or fused, got {rc.pools!r}")
    if rc.workers < 1:
        raise ClusterError(f"--workers must be at least 1, got {rc.workers}")
    gpus = cluster.get("GPU", 0.0)
    g = rc.gpus_per_worker
    if g is None:
        g = 1.0 if gpus > 0 and cfg.device != "cpu" else 0.0
    if not 0 <= g <= 1:
        raise ClusterError(f"--gpus_per_worker must be between 0 and 1 (a worker uses one GPU; 0.5: two workers share one), got {g}")
    if g == 0 and cfg.device and cfg.device.startswith("cuda"):
        raise ClusterError("--device cuda needs --gpus_per_worker > 0 (and GPUs in the Ray cluster)")
    if g > 0 and cfg.device == "cpu":
        raise ClusterError("--device cpu with --gpus_per_worker > 0: pass --gpus_per_worker 0 for a CPU run")
    if cluster.get("CPU", 0.0) < rc.workers:
        raise ClusterError(f"--workers {rc.workers} needs {rc.workers} CPUs in the Ray cluster; it has {cluster.get('CPU', 0.0):g}")
    if g > 0 and gpus < rc.workers * g - 1e-9:
        raise ClusterError(f"--workers {rc.workers} x --gpus_per_worker {g:g} needs {rc.workers * g:g} GPUs; the Ray cluster has {gpus:g}")
    device = cfg.device or ("cuda" if g > 0 else "cpu")
    split = rc.pools == "split" or (rc.pools == "auto" and g > 0)
    if not split:
        return [{"cls": SynthesizeStage, "num_cpus": 1.0, "num_gpus": g, "device": device}]
    cap_share = g * SMALL_SHARE if (cfg.captioner or cfg.perturber == "llm") else 0.0
    clip_share = g * SMALL_SHARE if (cfg.clip and not cfg.no_filter) else 0.0
    shares = [(CaptionPerturbStage, 0.25, cap_share), (InvertEditStage, 0.5, g - cap_share - clip_share),
              (FilterWriteStage, 0.25, clip_share)]
    return [{"cls": cls, "num_cpus": cpus, "num_gpus": round(share, 6),
             "device": cfg.device or ("cuda" if share > 0 else "cpu")} for cls, cpus, share in shares]


class _Stage:
    """A pool's callable class: a ``Synthesizer`` (so the local runner's stage code) with the models of its steps,
    loaded once here; ``__call__`` takes Ray Data batches of pickled ``_Batch`` rows. The pool running the filter
    writes each batch's rows as its shard."""

    STEPS: tuple[str, ...] = ()

    def __init__(self, cfg: SynthConfig, device: str, shard_number: int):
        syn = self.syn = Synthesizer(dataclasses.replace(cfg, device=device, progress=False))
        self.prov = syn.provenance()
        self.bars = _Bars(0, enabled=False)
        self.out = TripletDataset(cfg.out) if "filter" in self.STEPS else None
        self.shard_number = shard_number
        if "caption+perturb" in self.STEPS:
            if syn.cfg.captioner:
                syn.captioner()
            syn.perturber()
        if "invert+edit" in self.STEPS:
            syn.editor()
        if "filter" in self.STEPS:
            syn.filter()
            if syn.cfg.filters.hard_negatives:
                syn.perturber()

    def step(self, b: _Batch) -> _Batch:
        if "caption+perturb" in self.STEPS:
            b.data = self.syn.caption_and_perturb(b.data, self.prov, self.bars, b.times)
        if "invert+edit" in self.STEPS:
            b.data = self.syn.invert_and_edit(b.data, self.prov, self.bars, b.times)
        if "filter" in self.STEPS:
            rows = self.syn.filter_edits(b.data, self.prov, self.bars, b.times)
            t0 = time.perf_counter()
            name = keyed_shard_name(self.shard_number, b.keys)
            with self.out.writer(shard_size=10**9, keep_on_error=False, shard_name=name) as w:
                for t, images in rows:
                    add_row(w, t, images)
            b.times.add("write", time.perf_counter() - t0, len(rows))
            b.data = [t for t, _ in rows]  # back to the driver: the rows without their images
        return b

    def __call__(self, table):  # pyarrow.Table, one row per batch
        import pyarrow as pa

        out = [pickle.dumps(self.step(pickle.loads(blob)), protocol=pickle.HIGHEST_PROTOCOL)
               for blob in table.column("batch").to_pylist()]
        return pa.table({"batch": pa.array(out, type=pa.large_binary())})


class CaptionPerturbStage(_Stage):
    STEPS = ("caption+perturb",)


class InvertEditStage(_Stage):
    STEPS = ("invert+edit",)


class FilterWriteStage(_Stage):
    STEPS = ("filter",)


class SynthesizeStage(_Stage):
    """All steps in one pool (a CPU run: separate pools would only compete for the same cores)."""

    STEPS = ("caption+perturb", "invert+edit", "filter")


def run_ray(cfg: SynthConfig, rc: RayConfig, force_new: bool = False) -> Summary:
    """``Synthesizer(cfg).run(force_new)`` on a Ray cluster: the same rows, written by the workers.

    Raises:
        ClusterError: settings the cluster cannot run (see ``plan_pools``).
        RuntimeError: the manifest does not hold every input's rows exactly once after the run.
    """
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data, not only Ray core
    except ImportError as e:
        raise ClusterError(f"Ray Data is not installed ({e}); pip install \"cirsynth[ray]\"") from e
    t0 = time.perf_counter()
    syn = Synthesizer(cfg)
    out, todo, summary = syn.start(force_new, load_models=False)  # models load in the workers
    if todo:
        started = connect(rc.address)
        try:
            pools = plan_pools(cfg, rc, ray.cluster_resources())
            gpus = sum(p["num_gpus"] for p in pools)
            summary.engine = f"ray: {rc.workers} worker(s), {len(pools)} pool(s), {gpus:g} GPU each"
            _stream(cfg, rc, pools, syn.batches(todo), out.next_shard_number(), summary)
        finally:
            if started:
                ray.shutdown()
        _check_complete(out, todo)
    summary.seconds = time.perf_counter() - t0
    return summary


def _stream(cfg: SynthConfig, rc: RayConfig, pools: list[dict], batches: list, shard_number: int, summary: Summary) -> None:
    """Push ``batches`` through the pools; count the rows the last one wrote."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = cfg.progress
    items = [{"batch": pickle.dumps(_Batch([x.key for x in b], b, StageTimes()), protocol=pickle.HIGHEST_PROTOCOL)}
             for b in batches]
    data = ray.data.from_items(items, override_num_blocks=len(items))  # one block per batch: spread from the start
    for p in pools:
        # Ray 2.60's form of a fixed pool of ``workers`` actors (it deprecates ``concurrency=`` in favour of this)
        data = data.map_batches(p["cls"], fn_constructor_args=(cfg, p["device"], shard_number), batch_size=1,
                                batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=rc.workers),
                                num_cpus=p["num_cpus"], num_gpus=p["num_gpus"], udf_modifying_row_count=False)
    for row in data.iter_rows():
        b: _Batch = pickle.loads(row["batch"])
        for t in b.data:
            _count(summary, t)
        summary.stages.merge(b.times)


def _check_complete(out: TripletDataset, todo: list) -> None:
    """Every input of the run has rows, and no id is in the manifest twice."""
    ids = out.table().column("id").to_pylist()
    if len(ids) != len(set(ids)):
        raise RuntimeError(f"{out.root}: the manifest holds {len(ids) - len(set(ids))} duplicated ids after the Ray run")
    missing = {x.key for x in todo} - {i.split(":", 1)[0] for i in ids}
    if missing:
        raise RuntimeError(f"{out.root}: {len(missing)} inputs have no rows after the Ray run (e.g. {sorted(missing)[:3]})")
