"""Benchmark of ``cirsynth.editing``: seconds per triplet (invert + edit) and peak memory by method x dtype x batch.

CPU, small config (tiny random pipeline):   python benchmarks/editing.py --out bench_cpu.json
GPU, SD-1.5 shapes with random weights:     python benchmarks/editing.py --device cuda --sd15 --out bench_h100.json
  (defaults there: 50 steps; bf16/fp16 at batch 1 and 8; fp32 at batch 1 only, as the precision reference;
   expect several minutes, most of it the fp32 null-text row: pass --methods / --steps to trim.)

Speed does not depend on weight values, but early stopping in null-text does: random weights never reach the
threshold, so null-text rows are the worst case (all inner steps). Each row also reports reconstruction PSNR of
that dtype against fp32 on the same model and images (the precision check), and for the SD-1.5 config UNet MFU from
counted UNet sample-passes x 803 GFLOP (forward, batch 1; fwd+bwd counted as 3x) over the given peak.
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np
import torch
from PIL import Image

SD15_UNET_GFLOP = 803.0  # forward at batch 1, 64x64 latents, 77 tokens (measured, DESIGN.md)


def sd_vae(**config):
    """A random AutoencoderKL with the SD-1.5 / SDXL block layout (4 latent channels); ``config`` adds or overrides
    fields (sample size, SDXL's scaling factor and fp16 upcast)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(**{"down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
                            "block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "latent_channels": 4,
                            **config})


def sd15_random_pipeline(dtype: torch.dtype, device: str):
    """SD-1.5-shaped pipeline (UNet, VAE, CLIP text encoder 768-d x 77) with random weights, built from configs."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import BertTokenizer, CLIPTextConfig, CLIPTextModel

    from cirsynth.world.assets import ASSETS_DIR

    tokenizer = BertTokenizer.from_pretrained(ASSETS_DIR / "diffusion" / "tokenizer", model_max_length=77)  # only shapes
    # matter here; the bundled world tokenizer is MiniLM's, and travels to a device that lacks the MiniLM package
    text = CLIPTextModel(CLIPTextConfig(vocab_size=tokenizer.vocab_size, max_position_embeddings=77, hidden_size=768,
                                        intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                                        pad_token_id=0, bos_token_id=101, eos_token_id=102))  # fmt: skip
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)  # defaults are SD-1.5's blocks
    vae = sd_vae(sample_size=512)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)  # fmt: skip
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)  # fmt: skip
    pipe.register_to_config(_name_or_path="sd15-shapes-random")
    pipe.to(device=device, dtype=dtype)
    if dtype == torch.float16:
        pipe.vae.to(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def photos(n: int) -> list[Image.Image]:
    from skimage import data

    pool = [data.chelsea(), data.astronaut(), data.coffee(), data.rocket(), data.hubble_deep_field()]
    return [Image.fromarray(pool[i % len(pool)]) for i in range(n)]


def psnr(a: Image.Image, b: Image.Image) -> float:
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mse = ((x - y) ** 2).mean()
    return 200.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))  # 200 = identical (JSON has no inf)


class UnetCounter:
    """Counts UNet sample-passes (batch rows), separating grad-enabled passes (forward + backward)."""

    def __init__(self, unet) -> None:
        self.fwd = 0
        self.fwd_bwd = 0
        unet.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs) -> None:
        rows = args[0].shape[0] if args else kwargs["sample"].shape[0]
        if torch.is_grad_enabled():
            self.fwd_bwd += rows
        else:
            self.fwd += rows

    def gflop(self) -> float:
        return SD15_UNET_GFLOP * (self.fwd + 3 * self.fwd_bwd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sd15", action="store_true", help="SD-1.5 shapes with random weights (GPU)")
    ap.add_argument("--methods", default="null-text,negative-prompt,direct")
    ap.add_argument("--dtypes", default=None, help="default: fp32 on CPU, fp32,bf16,fp16 on CUDA")
    ap.add_argument("--batch-sizes", default=None, help="default: 1,4 on CPU, 1,4,8,16 on CUDA")
    ap.add_argument("--steps", type=int, default=None, help="DDIM steps (default 10 on CPU, 50 on CUDA)")
    ap.add_argument("--inner-steps", type=int, default=10, help="null-text Adam steps per timestep")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak for MFU (H100 SXM: 989)")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)

    from cirsynth.editing import CounterfactualEditor, EditorConfig, NullTextConfig
    from cirsynth.models.diffusion import resolve_dtype
    from cirsynth.testing.tiny_sd import tiny_sd_pipeline

    cuda = args.device.startswith("cuda")
    dtypes = (args.dtypes or ("fp32,bf16,fp16" if cuda else "fp32")).split(",")
    if "fp32" in dtypes:  # fp32 first: it is the reconstruction reference
        dtypes.remove("fp32")
        dtypes.insert(0, "fp32")
    batches = [int(b) for b in (args.batch_sizes or ("1,8" if cuda else "1,4")).split(",")]
    steps = args.steps or (50 if cuda else 10)
    methods = args.methods.split(",")
    rows, fp32_recon = [], {}
    for dtype_name in dtypes:
        dtype = resolve_dtype(dtype_name)
        torch.manual_seed(0)
        if args.sd15:
            pipe = sd15_random_pipeline(dtype, args.device)
        else:
            pipe = tiny_sd_pipeline("clip").to(device=args.device, dtype=dtype)
        counter = UnetCounter(pipe.unet)
        for method in methods:
            # the fp32 reference recipe is slow on SD-1.5 shapes: by default only its smallest batch runs on CUDA
            for batch in batches[:1] if (cuda and dtype == torch.float32 and not args.batch_sizes) else batches:
                cfg = EditorConfig(null_text=NullTextConfig(inner_steps=args.inner_steps), batch_size=batch)
                editor = CounterfactualEditor(pipe, cfg)
                images = photos(batch)
                prompts = ["a photo of a cat"] * batch
                targets = ["a photo of a dog"] * batch
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                counter.fwd = counter.fwd_bwd = 0
                t0 = time.perf_counter()
                inv = editor.invert(images, prompts, method=method, num_steps=steps)
                if cuda:
                    torch.cuda.synchronize()
                t1 = time.perf_counter()
                editor.edit(inv, targets, blend_words=[(["cat"], ["dog"])] * batch)
                if cuda:
                    torch.cuda.synchronize()
                t2 = time.perf_counter()
                gflop = counter.gflop()
                recon = editor.reconstruct(inv[:1])[0]
                key = method  # image 0 / prompt 0 is the same at every batch size
                if dtype == torch.float32:
                    fp32_recon.setdefault(key, recon)
                row = {
                    "method": method,
                    "dtype": dtype_name,
                    "batch": batch,
                    "steps": steps,
                    "invert_s_per_image": (t1 - t0) / batch,
                    "edit_s_per_image": (t2 - t1) / batch,
                    "s_per_triplet": (t2 - t0) / batch,
                    "null_text_inner_steps": int(np.sum(inv[0].stats.get("inner_steps", [0]))),
                    "peak_mem_gb": (torch.cuda.max_memory_allocated() if cuda else
                                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**30,  # fmt: skip
                    "recon_psnr_vs_fp32": psnr(recon, fp32_recon[key]) if dtype != torch.float32 and key in fp32_recon else None,
                }
                if args.sd15:
                    row["unet_mfu"] = gflop / 1e3 / (t2 - t0) / args.peak_tflops
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
        del pipe
        if cuda:
            torch.cuda.empty_cache()
    doc = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "config": "sd15-shapes-random" if args.sd15 else "tiny-sd-clip",
        "torch_threads": torch.get_num_threads(),
        "rows": rows,
    }
    text = json.dumps(doc, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
