#!/usr/bin/env bash
# The data-scarcity experiment in the mini world (issue 13): do synthetic counterfactual triplets help a CIR model
# when real triplets are scarce, measured fairly (every run the same optimisation budget) and read against an oracle
# (the ground-truth targets of the same edits) and a wrong-edit control. Exactly the commands behind
# docs/results/world_data_scarcity.*; run from the repository root after `make setup`, on a CPU:
#   bash docs/results/world_data_scarcity.sh [WORK_DIR]
# Every step resumes or is cheap to redo: synthesize resumes after its last complete batch (rerun the same line).
set -euo pipefail
W=${1:-world_experiment}
A=src/cirsynth/assets/world
CIRSYNTH=${CIRSYNTH:-.venv/bin/cirsynth}
N_SYN=${N_SYN:-160}  # synthetic references (CPU: about 8 s each with 4 candidates on a quiet 2-core CPU, 20-60 s
                     # shared); the committed results used 160 (stopped there for time; 300 was planned)
mkdir -p "$W"

# 1. the "real" (ground-truth, human-annotated-like) world CIR benchmark, and its train references as inputs
[ -f "$W/bench/dataset.json" ] || $CIRSYNTH world benchmark "$W/bench" --num_train 2000 --num_val 200 --num_test 500 \
  --seed 0 --synth_inputs "$W/train_refs.jsonl"

# 2. synthetic triplets from the same train references: the whole method with the world recipe (bundled models,
#    null-text inversion, candidates per edit, the filter calibrated on seed-0 world edits by `world calibrate-filter`)
head -n "$N_SYN" "$W/train_refs.jsonl" > "$W/train_refs_syn.jsonl"
$CIRSYNTH synthesize --recipe world --images "$W/train_refs_syn.jsonl" --out "$W/synthetic" --candidates 4 \
  --edit_types "[color, material, size, pattern, subject, object, background, lighting]" \
  --batch_size 8 --seed 0 --progress false

# 3. the reference arms for exactly the accepted synthetic edits: ground-truth targets, and another edit's targets;
#    and for every edit the run made (accepted or rejected): oracle, wrong-edit, and ours with the filter off
rm -rf "$W/oracle" "$W/wrong_edit" "$W/oracle_all" "$W/wrong_edit_all" "$W/ours_all"
$CIRSYNTH world controls "$W/synthetic" "$W/bench" "$W/oracle" "$W/wrong_edit"
$CIRSYNTH world controls "$W/synthetic" "$W/bench" "$W/oracle_all" "$W/wrong_edit_all" --all_edits true \
  --unfiltered_out "$W/ours_all"

# 4. real fraction x {real, real + ours, real + oracle, real + wrong-edit} x 5 seeds, Combiner on frozen world-CLIP
#    features, 150 optimisation steps for every run
$CIRSYNTH experiment data-scarcity "$A/clip" "triplets:$W/bench:train" "triplets:$W/bench:test" \
  docs/results/world_data_scarcity --synthetic "[triplets:$W/synthetic]" --oracle "[triplets:$W/oracle]" \
  --wrong_edit "[triplets:$W/wrong_edit]" --steps 150 \
  --fractions "[0.05, 0.1, 0.3, 1.0]" --seeds "[0, 1, 2, 3, 4]" --batch_size 128 --lr 1e-4 --cpu

# 5. the same for every edit: our triplets with the filter off against the oracle of the same edits
$CIRSYNTH experiment data-scarcity "$A/clip" "triplets:$W/bench:train" "triplets:$W/bench:test" \
  docs/results/world_data_scarcity_all_edits --synthetic "[triplets:$W/ours_all]" --oracle "[triplets:$W/oracle_all]" \
  --wrong_edit "[triplets:$W/wrong_edit_all]" --steps 150 \
  --fractions "[0.05, 0.1, 0.3]" --seeds "[0, 1, 2, 3, 4]" --batch_size 128 --lr 1e-4 --cpu
