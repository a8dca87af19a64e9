#!/usr/bin/env bash
# Measure a further-trained world UNet the way the recipe's numbers were measured, on the tuning seed first.
#
# Usage (repo root, 2 cores: two generation processes at a time, one thread each):
#   bash docs/results/world_adopt_unet.sh UNET_DIR [CACHE_DIR] [N0] [N1]
# UNET_DIR: a diffusers UNet2DConditionModel folder (config.json + diffusion_pytorch_model.safetensors) trained on from
# the bundled one (same VAE, same text encoder). N0 seed-0 tuning edits (default 288), N1 seed-1 held-out edits
# (default 192). It
#   1. puts UNET_DIR in the bundled diffusion folder (the working tree only; `git checkout
#      src/cirsynth/assets/world/diffusion/unet` undoes it), so every command below and the cache keys name the
#      bundled model, as the recipe's own runs do;
#   2. fills the candidate cache blocks (96 edits each, about 45 min a block on one thread of this 2-core CPU) of the
#      seed-0 edits, then of the seed-1 edits, two processes at a time;
#   3. calibrates the filter on the seed-0 edits into CACHE_DIR/recipe.json (not the bundled recipe; its candidate
#      table beside it) and prints its seed-0 figures beside the bundled recipe's own calibration figures.
# Decide on those seed-0 figures alone. Then, to adopt: copy CACHE_DIR/recipe.json over
# src/cirsynth/assets/world/recipe.json and run the plain held-out evaluation (its blocks are already cached):
#   cirsynth world evaluate --n N1 --seed 1 --cache CACHE_DIR --json_out docs/results/world_evaluate.json \
#     --update_card --grid docs/results/world_evaluate_grid.png
set -euo pipefail
UNET=${1:?UNET_DIR}
C=${2:-/tmp/cache_adopt}
N0=${3:-288}
N1=${4:-192}
A=src/cirsynth/assets/world/diffusion
PY=${PY:-.venv/bin/python}
mkdir -p "$C"
cp "$UNET/config.json" "$UNET/diffusion_pytorch_model.safetensors" "$A/unet/"
blocks() { echo $(( ($1 + 95) / 96 )); }
jobs_list=()
for b in $(seq 0 $(( $(blocks "$N0") - 1 ))); do jobs_list+=("0 $N0 $b"); done
for b in $(seq 0 $(( $(blocks "$N1") - 1 ))); do jobs_list+=("1 $N1 $b"); done
run_block() {  # seed n block
  OMP_NUM_THREADS=1 $PY -m cirsynth world evaluate --seed "$1" --n "$2" --block "$3" --cache "$C" \
    > "$C/block_seed$1_n$2_b$3.log" 2>&1 && echo "block seed $1 n $2 #$3 done ($(date +%H:%M))"
}
for ((i = 0; i < ${#jobs_list[@]}; i += 2)); do
  run_block ${jobs_list[i]} &
  if (( i + 1 < ${#jobs_list[@]} )); then run_block ${jobs_list[i + 1]} & fi
  wait
done
$PY -m cirsynth world calibrate-filter --n "$N0" --seed 0 --hard_negatives 64 --target_precision 0.8 \
  --min_accepted 0.1 --cache "$C" --out "$C/recipe.json" 2>&1 | tee "$C/calibration.log" | grep -v "it/s\]" | tail -5
$PY - src/cirsynth/assets/world/recipe.json "$C/recipe.json" <<'PYEOF'
"""Seed-0 figures of the bundled recipe's calibration beside the candidate's, as calibrate-filter reported them: the
edits (per type: named attribute right, rest preserved, kept candidate right, any candidate right) and the chosen
filter's cross-validated figures. The same edits only where both were calibrated on the same N0 (the bundled since session 22: 192;
for two different N0, docs/results/world_adopt_compare.py compares the candidate tables on the same first edits)."""
import json
import sys

for name, path in zip(("bundled UNet", "candidate UNet"), sys.argv[1:]):
    cal = json.load(open(path))["calibration"]
    print(name, json.dumps({"n": cal["n"], "edits": cal["report"]["edit"], "filter_cross_validated":
                            cal["search"].get("cross_validated"), "filter_kind": cal["search"].get("kind")}, indent=1))
PYEOF
