"""One GPU check of the editing engine, sized for a single device call (<= 8 min on an H100/H200).

    PYTHONPATH=src python benchmarks/device_check.py                # GPU: SD-1.5 and SDXL shapes, random init
    PYTHONPATH=src python benchmarks/device_check.py --tiny         # CPU: tiny SD + tiny SDXL, same code paths

For each model shape (SD-1.5 at 512^2, SDXL at 1024^2; random weights: speed does not depend on their values),
inversion method x {fp32, bf16} x batch {1, 8}: seconds per triplet (invert + one prompt-to-prompt edit with
LocalBlend, 50 steps; null-text with its early stop, which random weights never reach, so those rows are its worst
case), peak GPU memory, UNet TFLOP/s (UNet FLOPs counted once per shape with ``torch.utils.flop_counter`` x the
UNet rows the row ran, backward counted as 2x forward, over the row's wall time) and bf16-vs-fp32 reconstruction PSNR
(image 0 of the same method and shape).

Rows run in priority order (the targets first, the slow fp32 / SDXL null-text rows last); a row whose estimate
(UNet rows x measured seconds per row) does not fit in what is left of ``--budget-s`` is recorded as skipped, with
its estimate. The JSON is rewritten (atomically) after every row under ``--out`` (default ``$OUT``), so a killed
run still leaves what it measured. Prints the final JSON document.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location("cirsynth_bench_editing", Path(__file__).resolve().parent / "editing.py")
_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench)  # benchmarks/editing.py: the one SD-1.5-shapes builder, photos and PSNR
photos, psnr, sd15_random_pipeline, UnetCounter = _bench.photos, _bench.psnr, _bench.sd15_random_pipeline, _bench.UnetCounter
sd_vae = _bench.sd_vae

METHODS = ("ddpm", "direct", "negative-prompt", "ddim", "null-text")


def sdxl_random_pipeline(dtype: torch.dtype, device: str):
    """SDXL-shaped pipeline (1024^2; UNet 320/640/1280 with 1/2/10 transformer layers, CLIP-L 768 + bigG 1280 text
    encoders, 77 tokens, VAE with force_upcast) with random weights, built from configs on the device."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import BertTokenizer, CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from cirsynth.world.assets import ASSETS_DIR

    tokenizer = BertTokenizer.from_pretrained(ASSETS_DIR / "diffusion" / "tokenizer", model_max_length=77)  # only shapes
    # matter here; the bundled world tokenizer is MiniLM's, and travels to a device that lacks the MiniLM package
    ids = dict(vocab_size=tokenizer.vocab_size, max_position_embeddings=77, pad_token_id=0, bos_token_id=101, eos_token_id=102)
    with torch.device(device):  # initialise on the device: a CPU init of ~3.5B parameters takes minutes
        text = CLIPTextModel(CLIPTextConfig(**ids, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                            num_attention_heads=12))  # fmt: skip
        text_2 = CLIPTextModelWithProjection(CLIPTextConfig(**ids, hidden_size=1280, intermediate_size=5120,
                                                            num_hidden_layers=32, num_attention_heads=20,
                                                            projection_dim=1280))  # fmt: skip
        unet = UNet2DConditionModel(
            sample_size=128,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(320, 640, 1280),
            transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20),
            use_linear_projection=True,
            cross_attention_dim=2048,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,  # 6 x 256 + 1280
        )
        vae = sd_vae(sample_size=1024, scaling_factor=0.13025, force_upcast=True)
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   timestep_spacing="leading", steps_offset=1)  # fmt: skip
    sched.register_to_config(clip_sample=False, set_alpha_to_one=False)  # as SDXL's own scheduler_config.json
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text, text_encoder_2=text_2, tokenizer=tokenizer,
                                     tokenizer_2=tokenizer, unet=unet, scheduler=sched, add_watermarker=False)  # fmt: skip
    pipe.register_to_config(_name_or_path="sdxl-shapes-random")
    return _finish(pipe, dtype, device)


def _finish(pipe, dtype: torch.dtype, device: str):
    pipe.to(device=device, dtype=dtype)
    if dtype != torch.float32:  # the VAE decodes in fp32 (SDXL's overflows in fp16; the editor's convention)
        pipe.vae.to(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build(shape: str, dtype: torch.dtype, device: str):
    from cirsynth.testing.tiny_sd import tiny_sd_pipeline, tiny_sdxl_pipeline

    if shape == "sd15":
        with torch.device(device):  # initialise on the device (fast)
            return _finish(sd15_random_pipeline(torch.float32, device), dtype, device)
    if shape == "sdxl":
        return sdxl_random_pipeline(dtype, device)
    if shape == "tiny-sd":
        return _finish(tiny_sd_pipeline("clip"), dtype, device)
    if shape == "tiny-sdxl":
        return _finish(tiny_sdxl_pipeline(), dtype, device)
    raise ValueError(f"unknown shape {shape!r}")


def unet_gflop_per_row(editor) -> float:
    """GFLOP of one UNet forward row at the editor's working size, counted by ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode

    h, w = editor.image_size
    f = editor.pipe.vae_scale_factor
    x = torch.zeros(1, editor.unet.config.in_channels, h // f, w // f, device=editor.device)
    cond = editor.encode_text([""])
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        editor._unet(x, torch.tensor(999, device=editor.device), cond)
    return counter.get_total_flops() / 1e9


def seconds_per_row(editor, batch: int, sync) -> float:
    """Wall seconds per UNet row at a batch of 2 x ``batch`` rows (the CFG layout), after one warm-up call."""
    h, w = editor.image_size
    f = editor.pipe.vae_scale_factor
    x = torch.zeros(2 * batch, editor.unet.config.in_channels, h // f, w // f, device=editor.device)
    cond = editor.encode_text([""]).expand(2 * batch)
    t = torch.tensor(999, device=editor.device)
    with torch.no_grad():
        editor._unet(x, t, cond)
        sync()
        t0 = time.perf_counter()
        editor._unet(x, t, cond)
        sync()
    return (time.perf_counter() - t0) / (2 * batch)


def expected_rows(method: str, batch: int, steps: int, inner: int) -> int:
    """UNet forward-equivalent rows of one invert + edit (worst case for null-text: no early stop)."""
    invert = {"ddpm": 2, "null-text": 1 + 2 + 3 * inner}.get(method, 1) * batch * steps
    edit = (3 if method == "negative-prompt" else 4) * batch * steps
    return invert + edit


def plan(shapes: list[str], batches: list[int]) -> list[tuple[str, str, str, int]]:
    """(shape, dtype, method, batch) in priority order: fp32 references for the PSNR, then bf16 (the targets), then
    the slow rows (fp32 null-text, fp32 at the large batch, SDXL null-text)."""
    fast = [m for m in METHODS if m != "null-text"]
    small, large = batches[0], batches[-1]
    first, later = [], []
    for shape in shapes:
        xl = "sdxl" in shape
        first += [(shape, "fp32", m, small) for m in fast]
        first += [(shape, "bf16", m, b) for b in batches for m in (fast if xl else METHODS)]
        later += [(shape, "fp32", "null-text", small)]
        later += [(shape, "fp32", m, large) for m in fast if large != small]
        if xl:
            later += [(shape, "bf16", "null-text", b) for b in batches]
    return first + later


def write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny random SD + SDXL on CPU (a test of this script)")
    ap.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for device_check.json (default $OUT)")
    ap.add_argument("--budget-s", type=float, default=420.0, help="stop starting rows that would not fit")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default 50; --tiny: 2)")
    ap.add_argument("--inner-steps", type=int, default=None, help="null-text Adam steps per step (default 10; --tiny: 2)")
    ap.add_argument("--shapes", default=None, help="default sd15,sdxl (--tiny: tiny-sd,tiny-sdxl)")
    ap.add_argument("--batch-sizes", default=None, help="default 1,8 (--tiny: 1,2)")
    args = ap.parse_args(argv)

    from cirsynth.editing import CounterfactualEditor, EditorConfig, NullTextConfig
    from cirsynth.models.diffusion import resolve_dtype

    start = time.perf_counter()
    device = "cpu" if args.tiny else "cuda"
    cuda = device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("device_check: no CUDA device (use --tiny on a CPU)")
    steps = args.steps or (2 if args.tiny else 50)
    inner = args.inner_steps or (2 if args.tiny else 10)
    shapes = (args.shapes or ("tiny-sd,tiny-sdxl" if args.tiny else "sd15,sdxl")).split(",")
    batches = [int(b) for b in (args.batch_sizes or ("1,2" if args.tiny else "1,8")).split(",")]
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "device_check.json"
    doc = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "steps": steps,
        "null_text_inner_steps": inner,
        "budget_s": args.budget_s,
        "unet_gflop_per_row": {},
        "rows": [],
    }
    loaded: dict[tuple[str, str], tuple] = {}
    refs: dict[tuple[str, str], object] = {}  # (shape, method) -> fp32 reconstruction of image 0
    pending: list[tuple[dict, object]] = []  # bf16 rows whose fp32 reference has not run yet
    per_row_s: dict[tuple[str, str, int], float] = {}
    for shape, dtype_name, method, batch in plan(shapes, batches):
        row = {"shape": shape, "dtype": dtype_name, "method": method, "batch": batch}
        try:
            if (shape, dtype_name) not in loaded:  # all stay loaded (< 30 GB in all): rebuilding costs time
                pipe = build(shape, resolve_dtype(dtype_name), device)
                weights = sum(
                    p.numel() * p.element_size() for m in pipe.components.values() if isinstance(m, torch.nn.Module)
                    for p in m.parameters()
                )  # fmt: skip
                loaded[(shape, dtype_name)] = (pipe, UnetCounter(pipe.unet), weights / 2**30)
            pipe, rows, weights_gb = loaded[(shape, dtype_name)]
            cfg = EditorConfig(null_text=NullTextConfig(inner_steps=inner), batch_size=batch)
            editor = CounterfactualEditor(pipe, cfg)
            if shape not in doc["unet_gflop_per_row"]:
                doc["unet_gflop_per_row"][shape] = unet_gflop_per_row(editor)
            key = (shape, dtype_name, batch)
            if key not in per_row_s:
                per_row_s[key] = seconds_per_row(editor, batch, sync)
            estimate = expected_rows(method, batch, steps, inner) * per_row_s[key]
            row["estimated_s"] = estimate
            left = args.budget_s - (time.perf_counter() - start)
            if estimate > left:
                row["skipped"] = f"estimated {estimate:.0f} s > {left:.0f} s left of the budget"
                doc["rows"].append(row)
                write_json(path, doc)
                continue
            images = photos(batch)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            rows.fwd = rows.fwd_bwd = 0
            sync()
            t0 = time.perf_counter()
            inv = editor.invert(images, ["a photo of a cat"] * batch, method=method, num_steps=steps)
            sync()
            t1 = time.perf_counter()
            editor.edit(inv, ["a photo of a dog"] * batch, blend_words=[(["cat"], ["dog"])] * batch)
            sync()
            t2 = time.perf_counter()
            recon = editor.reconstruct(inv[:1])[0]
            if dtype_name == "fp32":
                refs.setdefault((shape, method), recon)
            else:
                pending.append((row, recon))
            row.update(
                s_per_triplet=(t2 - t0) / batch,
                invert_s_per_image=(t1 - t0) / batch,
                edit_s_per_image=(t2 - t1) / batch,
                null_text_inner_steps=int(sum(inv[0].stats.get("inner_steps", [0]))),
                # this pipeline's weights + the row's own peak working memory (other shapes stay resident meanwhile)
                peak_mem_gb=weights_gb + (torch.cuda.max_memory_allocated() - base) / 2**30 if cuda else None,
                unet_tflops=doc["unet_gflop_per_row"][shape] * (rows.fwd + 3 * rows.fwd_bwd) / 1e3 / (t2 - t0),
                recon_psnr_bf16_vs_fp32=None,  # filled in below once the fp32 row of this shape and method ran
            )
        except torch.cuda.OutOfMemoryError as e:  # recorded, and the check goes on
            row["error"] = f"out of memory: {str(e).splitlines()[0]}"
            torch.cuda.empty_cache()
        doc["rows"].append(row)
        for r, recon in pending:
            if r["recon_psnr_bf16_vs_fp32"] is None and (r["shape"], r["method"]) in refs:
                r["recon_psnr_bf16_vs_fp32"] = psnr(recon, refs[(r["shape"], r["method"])])
        doc["elapsed_s"] = time.perf_counter() - start
        write_json(path, doc)
        print(json.dumps(row), file=sys.stderr, flush=True)
    doc["elapsed_s"] = time.perf_counter() - start
    write_json(path, doc)
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
