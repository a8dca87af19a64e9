"""``synthesize --engine ray`` on a local Ray cluster started here (2 CPUs) with the tiny models: the local rows
with 1 and 2 workers, a killed worker retried, a killed driver resumed."""

import dataclasses
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from cirsynth.cli import main  # noqa: E402
from cirsynth.data import TripletDataset  # noqa: E402
from cirsynth.synth import ClusterError, SynthConfig, Synthesizer  # noqa: E402
from cirsynth.synth.ray_engine import RayConfig, plan_pools, run_ray, worker_runtime_env  # noqa: E402
from tests.synth.conftest import kill_mid_run_and_resume, make_mixed_folder, resume_argv, write_captions  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env=worker_runtime_env())
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, tiny_models):
    """Good and failing inputs, and the local engine's output on them (the reference)."""
    root = tmp_path_factory.mktemp("ray_mixed")
    expect = make_mixed_folder(root / "imgs")
    caps = write_captions(root / "imgs", [n for n in expect if n != "nocaption.png"])
    cfg = SynthConfig(images=str(root / "imgs"), out=str(root / "local"), editor=tiny_models["sd"], clip=tiny_models["clip"],
                      captions=str(caps), edits_per_image=2, inversion="negative-prompt", num_steps=3,
                      self_replace_steps=[0.2, 0.6], batch_size=3, progress=False)
    run_local_like_the_workers(cfg)
    return cfg, expect


def run_local_like_the_workers(cfg):
    """The local engine's run as the reference, at the Ray workers' torch thread count: Ray gives each CPU worker
    OMP_NUM_THREADS, or its num_cpus (1) where that is unset, and float sums depend on the thread count (with 2
    threads against their 1, scores differ beyond 1e-5 after a few steps)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 1))
    try:
        Synthesizer(cfg).run()
    finally:
        torch.set_num_threads(threads)


def _rows(out):
    ds = TripletDataset(out)
    return ds, {t.id: t for t in ds.triplets()}  # raises on a duplicated id


def _assert_same_rows(local_out, ray_out):
    lds, local = _rows(local_out)
    rds, got = _rows(ray_out)
    assert sorted(got) == sorted(local)
    for i, a in local.items():
        b = got[i]
        assert (b.status, b.reason, b.reference_caption, b.target_caption, b.modification_text, b.edit_type, b.source_words, b.target_words) == \
               (a.status, a.reason, a.reference_caption, a.target_caption, a.modification_text, a.edit_type, a.source_words, a.target_words), i
        assert b.scores.keys() == a.scores.keys() and all(b.scores[k] == pytest.approx(a.scores[k], abs=1e-5) for k in a.scores), i
        assert b.provenance["input"] == a.provenance["input"]
        for rel_a, rel_b in ((a.reference, b.reference), (a.target, b.target)):
            if a.status != "failed":
                assert np.array_equal(np.asarray(lds.open_image(rel_a)), np.asarray(rds.open_image(rel_b))), i  # CPU: identical
    return got


def _stage_pids(name: str) -> list[int]:
    """Processes of Ray actors running callable class ``name`` (Ray puts the class in the process title)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if name.encode() in cmd and b"ray::" in cmd:
                pids.append(int(d.name))
    return pids


def test_two_workers_give_the_local_rows_failed_inputs_included(cluster, mixed, tmp_path):
    cfg, expect = mixed
    out = tmp_path / "ray2"
    summary = run_ray(dataclasses.replace(cfg, out=str(out)), RayConfig(workers=2))
    got = _assert_same_rows(cfg.out, out)
    by_input = {}
    for t in got.values():
        by_input.setdefault(t.provenance["input"], []).append(t)
    for name, what in expect.items():  # a failing input is a failed row with its reason, under Ray too
        if what != "ok":
            assert [t.status for t in by_input[name]] == ["failed"] and by_input[name][0].reason.startswith(what)
    assert summary.accepted + summary.rejected + summary.failed == len(got) and summary.inputs == len(expect)
    d = summary.as_dict()
    assert d["engine"].startswith("ray: 2 worker") and d["stages"]["invert+edit"]["items"] > 0
    assert all(p.name.startswith("part-000000-") for p in TripletDataset(out).shard_paths())  # workers wrote them
    # nothing left: a rerun writes nothing and starts no worker
    again = run_ray(dataclasses.replace(cfg, out=str(out)), RayConfig(workers=2))
    assert again.skipped_done == len(expect) and again.accepted + again.rejected + again.failed == 0


def test_one_worker_killed_mid_run_is_retried_without_duplicates(cluster, mixed, tmp_path):
    cfg, _ = mixed
    out = tmp_path / "ray1"
    cfg1 = dataclasses.replace(cfg, out=str(out), batch_size=1)  # 10 batches: time to kill the worker between them
    local1 = tmp_path / "local1"
    run_local_like_the_workers(dataclasses.replace(cfg1, out=str(local1)))
    result = {}
    th = threading.Thread(target=lambda: result.setdefault("summary", run_ray(cfg1, RayConfig(workers=1))), daemon=True)
    th.start()
    killed, deadline = None, time.time() + 300
    while th.is_alive() and time.time() < deadline and killed is None:
        shards = TripletDataset(out).shard_paths() if (out / "dataset.json").exists() else []
        pids = _stage_pids("SynthesizeStage")
        if shards and pids:
            os.kill(pids[0], signal.SIGKILL)
            killed = (pids[0], len(shards))
        time.sleep(0.05)
    th.join(timeout=400)
    assert killed is not None and killed[1] < 10, "the worker was not killed mid-run"
    assert "summary" in result, "the run did not finish after its worker was killed"
    assert killed[0] not in _stage_pids("SynthesizeStage")
    got = _assert_same_rows(local1, out)
    assert len({t.provenance["input"] for t in got.values()}) == 10


def test_killed_driver_resumes_and_changed_settings_are_refused(cluster, tiny_models, tmp_path, capsys):
    n = 8
    args, out = resume_argv(tmp_path, n, tiny_models["sd"], seed=200)
    args += ["--engine", "ray", "--ray_address", cluster, "--workers", "1"]  # a driver of the running cluster
    rows = kill_mid_run_and_resume([sys.executable, "-m", "cirsynth", *args], out, n)
    assert {t.provenance["input"] for t in rows} == {f"img{i:02d}.png" for i in range(n)}
    capsys.readouterr()
    assert main(args + ["--seed", "5"]) == 2  # changed settings: refused before any worker starts
    assert "different settings" in capsys.readouterr().err


def test_pools_and_cluster_checks():
    cfg = SynthConfig(images="i", out="o", editor="e", clip="c")
    cpu = plan_pools(cfg, RayConfig(workers=2), {"CPU": 2.0})
    assert [p["cls"].__name__ for p in cpu] == ["SynthesizeStage"] and cpu[0]["device"] == "cpu" and cpu[0]["num_gpus"] == 0
    gpu = plan_pools(dataclasses.replace(cfg, captioner="blip"), RayConfig(workers=4), {"CPU": 16.0, "GPU": 4.0})
    assert [p["cls"].__name__ for p in gpu] == ["CaptionPerturbStage", "InvertEditStage", "FilterWriteStage"]
    assert sum(p["num_gpus"] for p in gpu) == pytest.approx(1.0) and gpu[1]["num_gpus"] == pytest.approx(0.8)
    assert all(p["device"] == "cuda" for p in gpu) and sum(p["num_cpus"] for p in gpu) == 1
    lexical = plan_pools(dataclasses.replace(cfg, no_filter=True), RayConfig(workers=1), {"CPU": 4.0, "GPU": 1.0})
    assert [p["device"] for p in lexical] == ["cpu", "cuda", "cpu"]  # the CPU stages hold no GPU
    llm = plan_pools(dataclasses.replace(cfg, perturber="llm"), RayConfig(workers=1), {"CPU": 4.0, "GPU": 1.0})
    assert [p["device"] for p in llm] == ["cuda", "cuda", "cuda"] and llm[0]["num_gpus"] == pytest.approx(0.1)
    with pytest.raises(ClusterError, match="needs 3 CPUs"):
        plan_pools(cfg, RayConfig(workers=3), {"CPU": 2.0})
    with pytest.raises(ClusterError, match="needs 4 GPUs"):
        plan_pools(cfg, RayConfig(workers=4, gpus_per_worker=1), {"CPU": 8.0, "GPU": 2.0})
    with pytest.raises(ClusterError, match="between 0 and 1"):
        plan_pools(cfg, RayConfig(gpus_per_worker=2), {"CPU": 8.0, "GPU": 2.0})
    with pytest.raises(ClusterError, match="needs --gpus_per_worker > 0"):
        plan_pools(dataclasses.replace(cfg, device="cuda"), RayConfig(), {"CPU": 8.0})


def test_workers_of_a_source_checkout_get_its_folder_on_their_path():
    import cirsynth

    env = worker_runtime_env()
    src = str(Path(cirsynth.__file__).resolve().parents[1])
    if Path(src).name in ("site-packages", "dist-packages"):
        assert env == {}  # installed: already on every worker's path
    else:
        paths = env["env_vars"]["PYTHONPATH"].split(os.pathsep)
        assert paths[0] == src and all(Path(p).is_absolute() for p in paths)
