"""Throughput of ``synthesize`` on the local engine vs the Ray engine with 1 and 2 workers. Prints JSON.

    PYTHONPATH=src python benchmarks/synth_scale.py                       # CPU, tiny random models
    PYTHONPATH=src python benchmarks/synth_scale.py --models world        # CPU, the mini world's bundled models
    PYTHONPATH=src python benchmarks/synth_scale.py --device cuda --models world --workers 1 2 4 8

Each run makes the same triplets from the same inputs into a fresh output. Its ``triplets_per_second`` is rows /
wall seconds of the whole run, Ray's actor start-up (each worker imports torch and loads its models) included; the
Ray cluster itself is started once, before the runs, and not counted. ``overhead_ratio`` is local triplets/s over
Ray-with-1-worker triplets/s (1.0: no overhead). ``busy`` gives each stage's busy seconds summed over workers (what
the models cost, without start-up and scheduling). On CUDA each worker holds one GPU and ``per_gpu`` is triplets/s
over the GPUs in use.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path


def _inputs(root: Path, n: int) -> tuple[Path, Path]:
    """``n`` small photos and a captions file (every caption editable by the lexical perturber)."""
    import csv

    import numpy as np
    from PIL import Image

    imgs = root / "imgs"
    imgs.mkdir(parents=True)
    colors = ["red", "blue", "green", "yellow"]
    with open(root / "captions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        for i in range(n):
            rng = np.random.default_rng(i)
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((64, 64), Image.BILINEAR).save(imgs / f"{i:04d}.png")
            w.writerow([f"{i:04d}.png", f"a {colors[i % 4]} car on a street"])
    return imgs, root / "captions.csv"


def _config(args, root: Path):
    from cirsynth.synth import SynthConfig

    imgs, caps = _inputs(root, args.images)
    if args.models == "world":
        from cirsynth.world.recipe import bundled_model

        editor, clip = bundled_model("editor"), bundled_model("clip")
    else:
        from cirsynth.testing.tiny_clip import make_tiny_clip
        from cirsynth.testing.tiny_sd import save_tiny_sd

        editor, clip = str(save_tiny_sd(root / "sd")), str(make_tiny_clip(root / "clip"))
    return SynthConfig(images=str(imgs), out="", editor=editor, clip=clip, captions=str(caps), edits_per_image=1,
                       inversion=args.inversion, num_steps=args.num_steps, batch_size=args.batch_size,
                       device=args.device, progress=False)


def _measure(summary, wall: float) -> dict:
    n = summary.accepted + summary.rejected + summary.failed
    return {"triplets": n, "seconds": round(wall, 2), "triplets_per_second": round(n / wall, 4),
            "engine": summary.engine, "busy": summary.stages.as_dict()}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--models", default="tiny", choices=["tiny", "world"])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--batch_size", type=int, default=4)
    ap.add_argument("--num_steps", type=int, default=10)
    ap.add_argument("--inversion", default="negative-prompt")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray cluster (default: all)")
    args = ap.parse_args(argv)

    import ray

    from cirsynth.synth import Synthesizer
    from cirsynth.synth.ray_engine import RayConfig, run_ray, worker_runtime_env

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = _config(args, root)
        result: dict = {"device": args.device, "models": args.models, "images": args.images, "batch_size": args.batch_size,
                        "num_steps": args.num_steps, "inversion": args.inversion, "cpu_count": os.cpu_count(),
                        "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
        t = time.perf_counter()
        s = Synthesizer(dataclasses.replace(cfg, out=str(root / "local"))).run()
        result["local"] = _measure(s, time.perf_counter() - t)
        t = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, runtime_env=worker_runtime_env())
        result["ray_cluster_start_seconds"] = round(time.perf_counter() - t, 2)
        result["ray_cluster"] = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
        gpu = 1 if args.device == "cuda" else 0
        for w in args.workers:
            t = time.perf_counter()
            s = run_ray(dataclasses.replace(cfg, out=str(root / f"ray{w}")), RayConfig(workers=w, gpus_per_worker=gpu))
            m = result[f"ray_{w}_workers"] = _measure(s, time.perf_counter() - t)
            if gpu:
                m["per_gpu_triplets_per_second"] = round(m["triplets_per_second"] / w, 4)
        ray.shutdown()
    base = result.get("ray_1_workers")
    if base:
        result["overhead_ratio"] = round(result["local"]["triplets_per_second"] / base["triplets_per_second"], 3)
    if base and "ray_2_workers" in result:
        result["speedup_2_vs_1_workers"] = round(result["ray_2_workers"]["triplets_per_second"] / base["triplets_per_second"], 3)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
