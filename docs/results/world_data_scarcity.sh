#!/usr/bin/env bash
# The data-scarcity experiment in the mini world (issue 7): does adding synthetic counterfactual triplets
# to scarce real triplets improve a CIR model? Exactly the commands behind docs/results/world_data_scarcity.*
# Run from the repository root after `make setup` (or any `make` target), on a CPU:
#   bash docs/results/world_data_scarcity.sh [WORK_DIR]
set -euo pipefail
W=${1:-world_experiment}
A=src/cirsynth/assets/world
CIRSYNTH=${CIRSYNTH:-.venv/bin/cirsynth}
mkdir -p "$W"

# 1. the "real" (ground-truth, human-annotated-like) world CIR benchmark, and its train references as inputs
$CIRSYNTH world benchmark "$W/bench" --num_train 2000 --num_val 200 --num_test 500 --seed 0 \
  --synth_inputs "$W/train_refs.jsonl"

# 2. synthetic triplets from the same train references: the whole method with the bundled world models
#    (captions from the benchmark list -> lexical world perturber -> inversion -> prompt-to-prompt -> CLIP filter)
head -n 500 "$W/train_refs.jsonl" > "$W/train_refs_500.jsonl"  # a quarter of the train references (CPU time)
$CIRSYNTH synthesize --images "$W/train_refs_500.jsonl" --out "$W/synthetic" --editor "$A/diffusion" --vocabulary world \
  --clip "$A/clip" --inversion negative-prompt --num_steps 20 --guidance_scale 3 --cross_replace_steps 0.4 --edits_per_image 1 \
  --edit_types "[color, material, size, pattern, subject, object, background, lighting]" \
  --self_replace_steps "[0.4]" --batch_size 8 --seed 0 --progress false

# 3. real fraction x {real, real + synthetic} x 3 seeds, Combiner on frozen world-CLIP features
$CIRSYNTH experiment data-scarcity "$A/clip" "triplets:$W/bench:train" "triplets:$W/bench:test" \
  docs/results/world_data_scarcity --synthetic "[triplets:$W/synthetic]" \
  --fractions "[0.1, 0.3, 0.5, 1.0]" --seeds "[0, 1, 2]" --epochs 10 --batch_size 128 --lr 1e-4 --cpu
