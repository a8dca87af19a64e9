#!/usr/bin/env bash
# One prepared device call (one H100/H200, about 9 minutes): the editing engine's GPU check (issue 16), then the mini
# world's diffusion model trained further on the GPU for a fixed time (issue 13). Everything lands under $OUT.
#
# Here, once:  bash benchmarks/device_prepare.sh          (wheels into .whl/, the cut text encoder into .device/)
# Device tool: run  command "bash benchmarks/device_session.sh"  carry [".whl", ".device"]  timeout_s 590
#   PART=check | train | all (default all); CHECK_S (default 250) and TRAIN_S (default 240) are the two budgets;
#   NOISE_OFFSET (default 0.1, session 21's text-to-image gain on the CPU; 0 = off) is the training's offset noise.
#   A CPU smoke run of check and train here: NO_WHEELS=1 PY=.venv/bin/python DEVICE=cpu NUM_SCENES=64 UNET_STEPS=4 \
#     BATCH=4 TRAIN_S=5 PART=train OUT=/tmp/ds bash benchmarks/device_session.sh
#   PART=experiment: the world data-scarcity experiment (docs/results/world_data_scarcity.sh) on the GPU with the bundled
#     recipe: EXP_REFS (default 2000) train references synthesised for at most SYN_S seconds (default 300), then the
#     controls and the arms (10 seeds, 150 steps each); back as $OUT/experiment.tgz (the tables of both runs, the
#     controls, the synthesis log) and $OUT/experiment.log. Not yet run on a GPU. A CPU smoke run of it here:
#     NO_WHEELS=1 PY=.venv/bin/python DEVICE=cpu PART=experiment EXP_REFS=8 EXP_BATCH=8 NUM_TRAIN=100 NUM_VAL=10 \
#     NUM_TEST=30 STEPS=5 SEEDS="[0, 1]" OUT=/tmp/dx bash benchmarks/device_session.sh
# Back under $OUT (8 files at most): versions.txt, device_check.json, train.log, training_report.json,
#   unet/config.json, unet/diffusion_pytorch_model.safetensors (the EMA weights, fp16).
# Then here: copy src/cirsynth/assets/world/diffusion to a new folder, put the returned unet/ in it, and measure it
#   with `cirsynth world evaluate --editor FOLDER --seed 1` against the bundled model before adopting it. The UNet
#   goes on training with --init_unet FOLDER/unet (the optimiser state, ~60 MB, cannot come back: 16 MiB a file).
set -uo pipefail
OUT=${OUT:-device_out}
PART=${PART:-all}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=src HF_HUB_OFFLINE=1
PY=${PY:-python3}
if [ -z "${NO_WHEELS:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed" | tee "$OUT/versions.txt"; exit 1; }
  export PYTHONPATH=/tmp/site:src
fi
$PY - > "$OUT/versions.txt" 2>&1 <<'PYEOF'
import importlib.metadata as m, torch
print({n: m.version(n) for n in ("torch", "diffusers", "transformers", "huggingface_hub", "tokenizers", "accelerate")})
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
import cirsynth.world.diffusion, cirsynth.editing  # noqa: F401  (fails here, early, if a dependency is missing)
print("imports ok")
PYEOF
cat "$OUT/versions.txt"
grep -q "imports ok" "$OUT/versions.txt" || exit 1

if [ "$PART" = check ] || [ "$PART" = all ]; then
  timeout $(( ${CHECK_S:-250} + 30 )) $PY benchmarks/device_check.py --budget-s "${CHECK_S:-250}" \
    --out "$OUT/device_check.json" > "$OUT/device_check.log" 2>&1 || echo "device_check ended with $?"
  tail -3 "$OUT/device_check.log"; rm -f "$OUT/device_check.log"
fi

if [ "$PART" = train ] || [ "$PART" = all ]; then
  A=src/cirsynth/assets/world/diffusion
  W=/tmp/world_train; rm -rf "$W"
  # the bundled recipe (grounding, Min-SNR, EMA, offset noise) continued from the bundled UNet, at GPU batch size on more scenes
  timeout $(( ${TRAIN_S:-240} + 150 )) $PY -m cirsynth world train diffusion "$W/diffusion" --device "${DEVICE:-cuda}" \
    --max_seconds "${TRAIN_S:-240}" --init_unet "$A/unet" --init_vae "$A/vae" --vae_steps 0 --decoder_steps 0 \
    --text_encoder .device/text_encoder --num_scenes "${NUM_SCENES:-32000}" --unet_steps "${UNET_STEPS:-4000}" \
    --batch_size "${BATCH:-256}" --unet_lr "${LR:-2e-4}" --grounding_weight 0.1 --snr_gamma 5.0 --ema_decay 0.999 \
    --noise_offset "${NOISE_OFFSET:-0.1}" \
    --object_weight 4.0 --latent_channels 16 --vae_channels "[32, 64, 64]" --render_workers "${RENDER_WORKERS:-16}" --log_every 100 \
    --save_dtype float16 --card false > "$OUT/train.log" 2>&1 || echo "training ended with $?"
  tail -5 "$OUT/train.log"
  SRC="$W/diffusion"; [ -d "$SRC/unet" ] || SRC="$W/diffusion.ckpt"  # stopped by the time budget: the checkpoint
  mkdir -p "$OUT/unet" && cp "$SRC/unet/config.json" "$SRC/unet/diffusion_pytorch_model.safetensors" "$OUT/unet/" || true
  [ -f "$SRC/training_report.json" ] && cp "$SRC/training_report.json" "$OUT/"
  [ -f "$W/diffusion.ckpt/train_state/state.json" ] && $PY - "$W/diffusion.ckpt/train_state/state.json" \
    > "$OUT/training_report.json" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1]))
print(json.dumps({"stopped_at_step": s["step"], "seconds": s["seconds"], "recipe": s["recipe"],
                  "loss_every_100": [sum(s["losses"][i:i + 100]) / len(s["losses"][i:i + 100]) for i in range(0, len(s["losses"]), 100)]}, indent=1))
PYEOF
fi
if [ "$PART" = experiment ]; then
  R=/tmp/experiment_results; rm -rf /tmp/world_experiment "$R"
  timeout $(( ${SYN_S:-300} + ${EXP_S:-240} )) env CIRSYNTH="$PY -m cirsynth" DEVICE="${DEVICE:-cuda}" SHARDS=1 \
    PER_SHARD="${EXP_REFS:-2000}" BATCH="${EXP_BATCH:-64}" SYN_SECONDS="${SYN_S:-300}" RESULTS="$R" \
    bash docs/results/world_data_scarcity.sh /tmp/world_experiment > "$OUT/experiment.log" 2>&1 \
    || echo "experiment ended with $?"
  tail -5 "$OUT/experiment.log"
  cp /tmp/world_experiment/syn_0.log "$R/" 2>/dev/null
  tar czf "$OUT/experiment.tgz" --exclude=feature_cache --exclude=runs -C "$R" . || true  # tables, not models
fi
ls -la "$OUT" "$OUT/unet" 2>/dev/null
