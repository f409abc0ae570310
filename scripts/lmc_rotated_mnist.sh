#!/usr/bin/env bash
# Linear mode connectivity on 20-task Rotated MNIST (MC-SGD paper, Sections 3-4): a naive, a
# multitask and an MC-SGD run of one seed with checkpoints, then every cl-analyze command.
#   bash scripts/lmc_rotated_mnist.sh [OUT_DIR] [SEED]
# Runs one after the other (multitask is the longest: one epoch over the union of tasks 1..t
# for every t); a run folder that already holds a complete result is skipped by cl-run.
set -euo pipefail
OUT=${1:-outputs/lmc}
SEED=${2:-1}
BIN=${BIN:-.venv/bin}
for method in naive multitask mcsgd; do
  "$BIN/cl-run" +experiment=rotated_mnist_$method seed="$SEED" hardware.num_threads=1 \
    progress=false checkpoints.enabled=true hydra.run.dir="$OUT/$method"
done
RUNS=("$OUT/mcsgd" "$OUT/naive" "$OUT/multitask")   # mcsgd first: its w_hat_1 starts the paths
ANALYSIS="$OUT/analysis"
"$BIN/cl-analyze" interpolate "${RUNS[@]}" i=1 "t=[5,10,20]" out="$ANALYSIS" num_threads=1
"$BIN/cl-analyze" interpolate "${RUNS[@]}" i=1 "t=[5,10,20]" start=naive out="$ANALYSIS/start_naive" num_threads=1
"$BIN/cl-analyze" plane "${RUNS[@]}" i=1 "t=[20]" grid=21 out="$ANALYSIS" num_threads=1
"$BIN/cl-analyze" distances "${RUNS[@]}" out="$ANALYSIS" num_threads=1
"$BIN/cl-analyze" curvature "${RUNS[@]}" i=1 "t=[5,10,20]" k=5 out="$ANALYSIS" num_threads=1
