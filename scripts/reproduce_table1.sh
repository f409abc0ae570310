#!/usr/bin/env bash
# Reproduce Table 1 of the MC-SGD paper on Rotated and Permuted MNIST:
# 7 methods x 2 benchmarks x 3 seeds with the presets of conf/experiment/, then cl-summarize
# and docs/results/table1.md. Resumable: running it again skips complete jobs.
# Usage: scripts/reproduce_table1.sh [JOBS] (parallel jobs, 1 CPU thread each; default 2)
# Environment: SEEDS (default 1,2,3), METHODS (default all seven), SWEEP_DIR, BIN;
# PRESETS: comma-separated preset names (overrides METHODS); WALL_EXTRA_SECONDS: wall time of
# earlier parts of the same reproduction, added to the reported total.
# SEEDS_SHOWN: the seeds named in the table header (default SEEDS).
# EXTRA_RUNS: more run folders or sweep folders (space-separated) summarized with this sweep,
# e.g. seeds run earlier; NOTE: a paragraph for the table's header (say where EXTRA_RUNS came from).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${1:-2}
BIN=${BIN:-.venv/bin}
SWEEP_DIR=${SWEEP_DIR:-outputs/multirun/table1}
SEEDS=${SEEDS:-1,2,3}
METHODS=${METHODS:-naive ewc agem er stable_sgd mcsgd multitask}
presets=""
for b in rotated_mnist permuted_mnist; do
  for m in $METHODS; do presets+="${b}_${m},"; done
done
presets=${PRESETS:-$presets}
start=$(date +%s)
"$BIN/cl-run" -m "+experiment=${presets%,}" seed="$SEEDS" hardware.num_threads=1 progress=false \
  hydra/launcher=joblib hydra.launcher.n_jobs="$JOBS" hydra.sweep.dir="$SWEEP_DIR"
wall=$(( $(date +%s) - start + ${WALL_EXTRA_SECONDS:-0} ))
# shellcheck disable=SC2086  # EXTRA_RUNS is a list of paths
"$BIN/cl-summarize" "$SWEEP_DIR" ${EXTRA_RUNS:-} out="$SWEEP_DIR/summary"
"$BIN/python" scripts/table1.py "$SWEEP_DIR/summary/summary.csv" docs/results/table1.md \
  --wall-seconds "$wall" --seeds "${SEEDS_SHOWN:-$SEEDS}" --note "${NOTE:-}" \
  --append docs/results/table1_notes.md \
  --command "scripts/reproduce_table1.sh $JOBS"
mkdir -p docs/results/table1/plots
cp "$SWEEP_DIR"/summary/plots/accuracy_curve_*.png "$SWEEP_DIR"/summary/plots/final_accuracy.png \
  docs/results/table1/plots/
cp "$SWEEP_DIR"/summary/{summary.csv,runs.csv,summary.md} docs/results/table1/
