"""Our null-text inversion beside diffusers' community ``NullTextPipeline``, in one run (CPU, tiny random SD pipeline).

The community pipeline is not in the diffusers package, and we do not copy it: pass its file
(``examples/community/pipeline_null_text_inversion.py`` of huggingface/diffusers) with ``--community``; it is loaded
at run time.

    python benchmarks/null_text_peer.py --community PATH/pipeline_null_text_inversion.py --out docs/results/null_text_peer_cpu.json

Both sides invert the same fitted images under the same prompts on the same pipeline object, with the same DDIM steps,
inner Adam steps, learning-rate schedule (1e-2 * (1 - i / 100)), early-stop threshold (eps + i * 2e-5) and guidance
7.5 (the community pipeline hard-codes 7.5, and the VAE scaling factor 0.18215, so the tiny pipeline's VAE is given
that scaling factor for this comparison), then reconstruct from their own inversion. The community pipeline inverts
one image path per call: at batch B it runs B times (its ``image_path + ".pt"`` cache is deleted before every call, so
it always optimises). Timings are the best of ``--repeats`` runs after one warm-up run per side, the sides taking turns.

Reported: seconds per image (inversion alone, and inversion + reconstruction) for ours at each batch size and for
theirs, the ratio (theirs / ours: > 1 means ours is faster), and agreement between the two results per image: max abs
difference of x_T and of the null embeddings, PSNR and max pixel difference between the reconstructions, and each
side's reconstruction PSNR against the input. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

_spec = importlib.util.spec_from_file_location("cirsynth_bench_editing", Path(__file__).resolve().parent / "editing.py")
_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench)
photos, psnr = _bench.photos, _bench.psnr

COMMUNITY_SCALING = 0.18215  # hard-coded in the community pipeline's image2latent


def load_community(path: str):
    """The ``NullTextPipeline`` class from the community file at ``path``."""
    spec = importlib.util.spec_from_file_location("community_null_text_inversion", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--community {path}: not a Python file")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not hasattr(mod, "NullTextPipeline"):
        raise SystemExit(f"--community {path}: no NullTextPipeline class in it")
    if hasattr(mod, "tqdm"):  # its optimisation loop draws a progress bar on stderr: silence it (both sides run silent)
        mod.tqdm = functools.partial(mod.tqdm, disable=True)
    return mod.NullTextPipeline


def best_times(configs: dict, repeats: int) -> tuple[dict, dict]:
    """Per config, the best-of-``repeats`` (invert seconds, reconstruct seconds) of ``configs[name]()`` (which returns
    ``(invert_s, reconstruct_s, result)``) and its last result. The configs take turns within every repeat, so a
    change in the machine's load hits all of them alike."""
    times: dict = {k: [] for k in configs}
    last: dict = {}
    for _ in range(repeats):
        for k, fn in configs.items():
            t_inv, t_rec, last[k] = fn()
            times[k].append((t_inv, t_rec))
    return {k: (min(t for t, _ in v), min(t for _, t in v)) for k, v in times.items()}, last


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--community", required=True, help="path to diffusers' examples/community/pipeline_null_text_inversion.py")
    ap.add_argument("--steps", type=int, default=10, help="DDIM steps")
    ap.add_argument("--inner-steps", type=int, default=10, help="Adam steps per timestep")
    ap.add_argument("--early-stop", type=float, default=1e-5, help="early-stop epsilon (both sides)")
    ap.add_argument("--batch-sizes", default="1,4", help="our batch sizes; theirs is always 1")
    ap.add_argument("--sample-size", type=int, default=16, help="tiny pipeline latent side (images are 4x that)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)

    from cirsynth.editing import CounterfactualEditor, EditorConfig, NullTextConfig
    from cirsynth.testing.tiny_sd import tiny_sd_pipeline

    torch.set_num_threads(args.threads)
    NullTextPipeline = load_community(args.community)
    pipe = tiny_sd_pipeline("clip", sample_size=args.sample_size)
    pipe.vae.register_to_config(scaling_factor=COMMUNITY_SCALING)
    pipe.set_progress_bar_config(disable=True)
    theirs = NullTextPipeline(**pipe.components)  # the same modules
    theirs.set_progress_bar_config(disable=True)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    n = max(batches)
    prompts = [f"a photo of a {w}" for w in ("cat", "woman", "cup", "rocket", "sky", "dog", "car", "tree")][:n]
    prompts += ["a photo"] * (n - len(prompts))

    def ours_editor(batch: int) -> CounterfactualEditor:
        nt = NullTextConfig(inner_steps=args.inner_steps, early_stop=args.early_stop, early_stop_growth=2e-5)
        return CounterfactualEditor(pipe, EditorConfig(null_text=nt, batch_size=batch))

    images = ours_editor(1).prepare(photos(n))  # fitted to the model size: both sides see these pixels
    T, K, eps = args.steps, args.inner_steps, args.early_stop

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, im in enumerate(images):
            paths.append(str(Path(tmp) / f"img{i}.png"))
            im.save(paths[-1])

        def their_invert(i: int):
            Path(paths[i] + ".pt").unlink(missing_ok=True)  # its cache, keyed on the path only
            return theirs.invert(paths[i], prompts[i], num_inner_steps=K, early_stop_epsilon=eps, num_inference_steps=T)

        def their_recon(i: int, x_T, nulls):
            return theirs(prompts[i], nulls, x_T, num_inference_steps=T, guidance_scale=7.5).images[0]

        def their_run(count: int):
            t_inv = t_rec = 0.0
            out = []
            for i in range(count):
                t0 = time.perf_counter()
                x_T, nulls = their_invert(i)
                t1 = time.perf_counter()
                out.append((x_T, nulls, their_recon(i, x_T, nulls)))
                t_inv, t_rec = t_inv + t1 - t0, t_rec + time.perf_counter() - t1
            return t_inv, t_rec, out

        def our_run(batch: int):
            ed = ours_editor(batch)
            t0 = time.perf_counter()
            inv = ed.invert(images[:batch], prompts[:batch], method="null-text", num_steps=T, guidance_scale=7.5)
            t1 = time.perf_counter()
            recon = ed.reconstruct(inv)
            return t1 - t0, time.perf_counter() - t1, (inv, recon)

        their_run(1)  # warm-up, both sides
        our_run(1)
        configs = {"theirs": lambda: their_run(n), **{b: (lambda b=b: our_run(b)) for b in batches}}
        best, last = best_times(configs, args.repeats)
        their_out = last["theirs"]
        their_row = {"side": "community NullTextPipeline", "batch": 1, "images": n,
                     "invert_s_per_image": best["theirs"][0] / n, "invert_reconstruct_s_per_image": sum(best["theirs"]) / n}
        rows = []
        for b in batches:
            t_inv, t_all = best[b][0], sum(best[b])
            inv, recon = last[b]
            agree = []
            for i in range(b):
                x_T, nulls, their_img = their_out[i]
                agree.append({
                    "x_T_max_abs_diff": float((inv[i].x_T - x_T[0].float().cpu()).abs().max()),
                    "null_max_abs_diff": float((inv[i].null_embeddings - nulls[:, 0].float().cpu()).abs().max()),
                    "recon_psnr_ours_vs_theirs": psnr(recon[i], their_img),
                    "recon_max_pixel_diff": int(np.abs(np.asarray(recon[i], np.int16) - np.asarray(their_img, np.int16)).max()),
                    "recon_psnr_vs_input": {"ours": psnr(recon[i], images[i]), "theirs": psnr(their_img, images[i])},
                    "inner_steps_ours": int(np.sum(inv[i].stats["inner_steps"])),
                })
            rows.append({"side": "cirsynth CounterfactualEditor", "batch": b, "images": b,
                         "invert_s_per_image": t_inv / b, "invert_reconstruct_s_per_image": t_all / b,
                         "speedup_vs_community": {"invert": their_row["invert_s_per_image"] / (t_inv / b),
                                                  "invert_reconstruct": their_row["invert_reconstruct_s_per_image"] / (t_all / b)},
                         "agreement": agree})
        rows.insert(0, their_row)

    doc = {
        "benchmark": "null-text inversion: cirsynth vs diffusers community NullTextPipeline",
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} torch thread(s), {platform.system()}",
        "pipeline": f"tiny random SD (cirsynth.testing.tiny_sd, clip text encoder, {4 * args.sample_size}px), "
                    f"VAE scaling factor {COMMUNITY_SCALING}",
        "settings": {"steps": T, "inner_steps": K, "early_stop": eps, "guidance_scale": 7.5, "repeats": args.repeats, "timing": "best of repeats (invert and reconstruct each), configs interleaved"},
        "versions": {"torch": torch.__version__, "diffusers": __import__("diffusers").__version__},
        "community_file": args.community,
        "rows": rows,
    }
    text = json.dumps(doc, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
