#!/usr/bin/env bash
# The GPU check of issue 31, in one go, from the repository root of a machine with Python, torch
# + CUDA, torchvision, numpy, pandas, rich, matplotlib and joblib, no network, no Hydra and no
# ../shared. It needs gpu_bundle/ beside it (scripts/make_gpu_bundle.sh, run where a registry is
# reached; carried along with the run tool's carry=["gpu_bundle"]). Fits 8 minutes on an
# H100/H200: every part runs under `timeout`, a part past the overall budget is skipped, and a
# failing part is recorded and the next one runs.
#
#   1. install: the bundle's wheels with `pip install --no-deps --no-index --target
#      gpu_bundle/site` (nothing of the machine's own packages is replaced; a wheel whose module
#      the machine already has, e.g. filelock or yaml, is left out), then the project itself the
#      same way; without pip the wheels are unzipped there. PYTHONPATH=gpu_bundle/site:<repo>.
#   2. every registered strategy for 2 tasks on hardware=$BENCH_DEVICE (pass/fail each)
#   3. a bare loop of the 120,000 steps of naive 20-task Rotated MNIST on device tensors, the
#      naive and MC-SGD 20-task runs (wall, steps/s, ratio to the floor, peak GPU memory,
#      accuracy beside the CPU's for seed 1)
#   4. the same with hardware.compile=reduce-overhead and with hardware.precision=bf16, on
#      $VARIANT_TASKS tasks (default 3, with their own floor and eager runs: the 8 minutes do
#      not hold four more 20-task runs and their compilations)
#   5. sweep throughput: n = 1, 4, 8 naive runs of $SWEEP_TASKS tasks sharing the device
#      (cl-run -m with hydra/launcher=joblib, n_jobs=n): runs per hour
#   One table, printed and written to $OUT/bench_gpu.md (with the raw bench_gpu.jsonl) when OUT
#   is set, else to outputs/bench_gpu/.
#
# Environment: BENCH_DEVICE=cuda (default) | cpu (the CPU rehearsal); BENCH_SCALE=full (default) |
# tiny (a few hundred steps per part: checks the script, measures nothing); PYTHON (default
# python3); BUNDLE (default gpu_bundle); BUDGET seconds (default 470); SMOKE_LIMIT seconds of
# the strategies part (default 150).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-$(command -v python3 || command -v python)}
DEVICE=${BENCH_DEVICE:-cuda}
BUNDLE=$(cd "${BUNDLE:-gpu_bundle}" && pwd) || { echo "no bundle: run scripts/make_gpu_bundle.sh"; exit 1; }
BUDGET=${BUDGET:-470}
DEST=${OUT:-$REPO/outputs/bench_gpu}
mkdir -p "$DEST"
RESULTS=$DEST/bench_gpu.jsonl
SWEEPS=$(mktemp -d "${TMPDIR:-/tmp}/bench_gpu_sweeps.XXXXXX")
: > "$RESULTS"
START=$(date +%s)
if [ "${BENCH_SCALE:-full}" = tiny ]; then
    TASKS=2; SAMPLES=(--samples 1000); VARIANT_TASKS=2; SWEEP_TASKS=1; SWEEP_SAMPLES=500
    SMOKE_SAMPLES=300
else
    TASKS=20; SAMPLES=(); VARIANT_TASKS=${VARIANT_TASKS:-3}; SWEEP_TASKS=${SWEEP_TASKS:-2}
    SWEEP_SAMPLES=60000; SMOKE_SAMPLES=1000
fi
FLOOR_SAMPLES=${SAMPLES[1]:-60000}

note() {  # a line under the table
    "$PY" -c 'import json, sys; print(json.dumps({"part": "note", "text": sys.argv[1]}))' "$1" \
        >> "$RESULTS"
    echo "== $1"
}

part() {  # part NAME SECONDS COMMAND...: run under timeout unless the budget is spent
    local name=$1 limit=$2; shift 2
    local left=$(( BUDGET - ($(date +%s) - START) ))
    if [ "$left" -lt 15 ]; then note "$name: skipped (time budget of ${BUDGET} s spent)"; return; fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (at most ${limit} s)"
    local t0=$(date +%s)
    timeout --kill-after=5 "$limit" bash -c '"$@"' bash "$@"  # the functions below, exported
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        note "$name: FAILED (exit $rc$([ "$rc" -ge 124 ] && echo ": over ${limit} s"), after $(( $(date +%s) - t0 )) s)"
    fi
}

install() {
    local site=$BUNDLE/site wheels=()
    rm -rf "$site" && mkdir -p "$site"
    for wheel in "$BUNDLE"/wheels/*.whl; do
        local module=
        case "$(basename "$wheel" | tr 'A-Z' 'a-z')" in
            filelock-*) module=filelock ;; pyyaml-*) module=yaml ;;
        esac
        if [ -n "$module" ] && "$PY" -c "import $module" 2>/dev/null; then
            echo "kept the machine's $module"; continue
        fi
        wheels+=("$wheel")
    done
    if "$PY" -m pip --version >/dev/null 2>&1; then
        "$PY" -m pip install --quiet --no-deps --no-index --target "$site" "${wheels[@]}" || return 1
        "$PY" -m pip install --quiet --no-deps --no-index --no-build-isolation --target "$site" . \
            > "$DEST/install_project.log" 2>&1 \
            || echo "project not installed by pip (see $DEST/install_project.log): it runs" \
                    "from $REPO (PYTHONPATH)"
    else
        echo "no pip: unzipping the wheels into $site"
        for wheel in "${wheels[@]}"; do "$PY" -m zipfile -e "$wheel" "$site" || return 1; done
    fi
    PYTHONPATH="$site:$REPO" "$PY" -c "import cl_runner.cli, hydra, omegaconf, quadprog; \
from hydra.core.plugins import Plugins; from hydra.plugins.launcher import Launcher; \
names = [p.__name__ for p in Plugins.instance().discover(Launcher)]; \
assert 'JoblibLauncher' in names, names; print('imports ok; launchers:', names)"
}

data() {
    mkdir -p "$BUNDLE/data/MNIST/raw"
    for f in "$BUNDLE"/data/MNIST/raw/*.gz; do
        [ -f "${f%.gz}" ] || gzip -dc "$f" > "${f%.gz}" || return 1
    done
}

parts() { "$PY" scripts/bench_gpu_parts.py "$@" --results "$RESULTS" --device "$DEVICE"; }

sweep() {  # sweep N: N naive runs at once through the joblib launcher
    local n=$1 seeds dir=$SWEEPS/n$1  # run folders outside $OUT: only the logs come back
    seeds=$(seq -s, 1 "$n")
    rm -rf "$dir"
    local t0; t0=$("$PY" -c 'import time; print(time.time())')
    "$PY" -m cl_runner -m strategy=naive benchmark=rotated_mnist "seed=$seeds" \
        "benchmark.num_tasks=$SWEEP_TASKS" "benchmark.train_samples_per_task=$SWEEP_SAMPLES" \
        "hardware=$DEVICE" progress=false data.download=false hydra/launcher=joblib \
        "hydra.launcher.n_jobs=$n" "hydra.sweep.dir=$dir" > "$DEST/sweep_n$n.log" 2>&1
    local rc=$?
    local done; done=$(find "$dir" -name summary.json -exec grep -l '"status": "complete"' {} + \
        2>/dev/null | wc -l)
    "$PY" -c 'import json, sys, time; n, t, rc, done, tasks = sys.argv[1:]; print(json.dumps({
        "part": "sweep", "n": int(n), "tasks": int(tasks), "wall": time.time() - float(t),
        "ok": rc == "0" and int(done) == int(n)}))' "$n" "$t0" "$rc" "$done" "$SWEEP_TASKS" \
        >> "$RESULTS"
    [ "$rc" -eq 0 ] || tail -5 "$DEST/sweep_n$n.log"
    return "$rc"
}

export PY DEVICE BUNDLE REPO RESULTS DEST SWEEPS SWEEP_TASKS SWEEP_SAMPLES
export -f note install data parts sweep
part install 90 install
export PYTHONPATH=$BUNDLE/site:$REPO
part data 30 data
export CL_RUNNER_DATA=$BUNDLE/data
part env 60 parts env
part "strategies, 2 tasks" "${SMOKE_LIMIT:-150}" parts smoke --samples "$SMOKE_SAMPLES"
part "floor, $TASKS tasks" 60 parts floor --tasks "$TASKS" --samples "$FLOOR_SAMPLES" \
    --name "floor (bare loop)"
part "naive, $TASKS tasks" 90 parts run --strategy naive --tasks "$TASKS" "${SAMPLES[@]}" \
    --name naive
part "mcsgd, $TASKS tasks" 90 parts run --strategy mcsgd --tasks "$TASKS" "${SAMPLES[@]}" \
    --name mcsgd
V=$VARIANT_TASKS
part "floor, $V tasks" 30 parts floor --tasks "$V" --samples "$FLOOR_SAMPLES" --name "floor ($V)"
for strategy in naive mcsgd; do
    part "$strategy, $V tasks" 45 parts run --strategy "$strategy" --tasks "$V" "${SAMPLES[@]}" \
        --name "$strategy ($V)"
    part "$strategy compiled, $V tasks" 90 parts run --strategy "$strategy" --tasks "$V" \
        "${SAMPLES[@]}" --set hardware.compile=reduce-overhead \
        --name "$strategy compile=reduce-overhead ($V)"
    part "$strategy bf16, $V tasks" 45 parts run --strategy "$strategy" --tasks "$V" \
        "${SAMPLES[@]}" --set hardware.precision=bf16 --name "$strategy bf16 ($V)"
done
for n in 1 4 8; do part "sweep, $n runs at once" 75 sweep "$n"; done
note "total $(( $(date +%s) - START )) s; parts: install, data, env, strategies, 20-task runs, \
variants on $V tasks, sweeps of $SWEEP_TASKS-task naive runs; BENCH_DEVICE=$DEVICE \
BENCH_SCALE=${BENCH_SCALE:-full}"
"$PY" scripts/bench_gpu_parts.py table --results "$RESULTS" --markdown "$DEST/bench_gpu.md"
rm -rf "$SWEEPS"
echo "written: $DEST/bench_gpu.md, $RESULTS"
