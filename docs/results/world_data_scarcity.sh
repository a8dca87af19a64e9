#!/usr/bin/env bash
# The data-scarcity experiment in the mini world (issue 13): do synthetic counterfactual triplets help a CIR model
# when real triplets are scarce, measured fairly (every run the same optimisation budget) and read against an oracle
# (the ground-truth targets of the same edits) and a wrong-edit control. The commands for
# docs/results/world_data_scarcity*/ (the figures committed there come from this script's earlier form:
# `git show 9b5eeb3:docs/results/world_data_scarcity.sh`); run from the repository root after `make setup`, on a CPU:
#   bash docs/results/world_data_scarcity.sh [WORK_DIR]
# Every step resumes or is cheap to redo: synthesize resumes after its last complete batch (rerun the same line).
# Synthesis runs as SHARDS parallel processes of one thread each (one per core); each shard is its own synthetic
# TripletDataset, and every arm below takes the list of shards.
# On a GPU (benchmarks/device_session.sh PART=experiment): DEVICE=cuda SHARDS=1 PER_SHARD=2000 BATCH=64; the tables
# then go to RESULTS (default docs/results). NUM_TRAIN / NUM_VAL / NUM_TEST, STEPS, SEEDS and FRACTIONS size the run
# (a CPU smoke run: NUM_TRAIN=100 NUM_VAL=10 NUM_TEST=30 SHARDS=1 PER_SHARD=8 STEPS=5 SEEDS="[0, 1]"). SYN_SECONDS
# stops synthesis after that long: the arms then take the batches it finished.
set -euo pipefail
W=${1:-world_experiment}
A=src/cirsynth/assets/world
CIRSYNTH=${CIRSYNTH:-.venv/bin/cirsynth}
SHARDS=${SHARDS:-2}       # parallel synthesize processes
PER_SHARD=${PER_SHARD:-300}  # references per shard (2-core CPU: ~3 min per batch of 8 per shard with 8 candidates,
                          # so ~2 hours for 300; rerun the script to resume after the last complete batch)
BATCH=${BATCH:-8}         # references per synthesize batch (one manifest shard each)
DEVICE=${DEVICE:-cpu}     # cpu: one thread per shard, the experiment with --cpu; cuda: the GPU for both
RESULTS=${RESULTS:-docs/results}
STEPS=${STEPS:-150}
SEEDS=${SEEDS:-[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}
FRACTIONS=${FRACTIONS:-[0.05, 0.1, 0.3, 1.0]}
if [ "$DEVICE" = cpu ]; then THREADS="OMP_NUM_THREADS=1 MKL_NUM_THREADS=1"; EXP_DEVICE=(--cpu); else THREADS=; EXP_DEVICE=(); fi
mkdir -p "$W"

# 1. the "real" (ground-truth, human-annotated-like) world CIR benchmark, and its train references as inputs
[ -f "$W/bench/dataset.json" ] || $CIRSYNTH world benchmark "$W/bench" --num_train "${NUM_TRAIN:-2000}" \
  --num_val "${NUM_VAL:-200}" --num_test "${NUM_TEST:-500}" \
  --seed 0 --synth_inputs "$W/train_refs.jsonl"

# 2. synthetic triplets from the same train references: the whole method with the world recipe (bundled models,
#    DDPM inversion with a noise seed per candidate, 8 randomised candidates per edit, the filter calibrated on seed-0
#    world edits by `world calibrate-filter`); shard s takes references s*PER_SHARD+1 .. (s+1)*PER_SHARD
for s in $(seq 0 $((SHARDS - 1))); do
  sed -n "$((s * PER_SHARD + 1)),$(((s + 1) * PER_SHARD))p" "$W/train_refs.jsonl" > "$W/refs_$s.jsonl"
  env $THREADS ${SYN_SECONDS:+timeout $SYN_SECONDS} $CIRSYNTH synthesize --recipe world --images "$W/refs_$s.jsonl" --device "$DEVICE" \
    --out "$W/syn_$s" --edit_types "[color, material, size, pattern, subject, object, background, lighting]" \
    --batch_size "$BATCH" --seed 0 --progress false > "$W/syn_$s.log" 2>&1 &
done
wait

# 3. per shard, the reference arms for exactly the accepted synthetic edits (ground-truth targets, another edit's
#    targets), and for every edit the shard made (accepted or rejected): oracle, wrong-edit, ours with the filter off
SYN= ORA= WRO= ORA_ALL= WRO_ALL= OURS_ALL=
mkdir -p "$RESULTS/world_data_scarcity" "$RESULTS/world_data_scarcity_all_edits"
for s in $(seq 0 $((SHARDS - 1))); do
  rm -rf "$W/oracle_$s" "$W/wrong_edit_$s" "$W/oracle_all_$s" "$W/wrong_edit_all_$s" "$W/ours_all_$s"
  $CIRSYNTH world controls "$W/syn_$s" "$W/bench" "$W/oracle_$s" "$W/wrong_edit_$s" \
    | tail -n 1 > "$RESULTS/world_data_scarcity/controls_$s.json"
  $CIRSYNTH world controls "$W/syn_$s" "$W/bench" "$W/oracle_all_$s" "$W/wrong_edit_all_$s" --all_edits true \
    --unfiltered_out "$W/ours_all_$s" | tail -n 1 > "$RESULTS/world_data_scarcity_all_edits/controls_$s.json"
  SYN+="triplets:$W/syn_$s," ORA+="triplets:$W/oracle_$s," WRO+="triplets:$W/wrong_edit_$s,"
  ORA_ALL+="triplets:$W/oracle_all_$s," WRO_ALL+="triplets:$W/wrong_edit_all_$s," OURS_ALL+="triplets:$W/ours_all_$s,"
done

# 4. real fraction x {real, real + ours, real + oracle, real + wrong-edit} x 10 seeds, Combiner on frozen world-CLIP
#    features, 150 optimisation steps for every run
$CIRSYNTH experiment data-scarcity "$A/clip" "triplets:$W/bench:train" "triplets:$W/bench:test" \
  "$RESULTS/world_data_scarcity" --synthetic "[${SYN%,}]" --oracle "[${ORA%,}]" --wrong_edit "[${WRO%,}]" \
  --steps "$STEPS" --fractions "$FRACTIONS" --seeds "$SEEDS" --batch_size 128 --lr 1e-4 "${EXP_DEVICE[@]}"

# 5. the same for every edit: our triplets with the filter off against the oracle of the same edits
$CIRSYNTH experiment data-scarcity "$A/clip" "triplets:$W/bench:train" "triplets:$W/bench:test" \
  "$RESULTS/world_data_scarcity_all_edits" --synthetic "[${OURS_ALL%,}]" --oracle "[${ORA_ALL%,}]" \
  --wrong_edit "[${WRO_ALL%,}]" --steps "$STEPS" --fractions "[0.05, 0.1, 0.3]" --seeds "$SEEDS" \
  --batch_size 128 --lr 1e-4 "${EXP_DEVICE[@]}"
