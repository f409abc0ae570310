#!/usr/bin/env bash
# The CPU rehearsal of scripts/bench_gpu.sh (issue 31, step 4): a fresh virtualenv that mimics
# the GPU machine as far as this one can, then bench_gpu.sh's every part at tiny sizes on the CPU,
# without network (unshare -n, when run as root).
#
#   - torch $TORCH (default 2.11.0) and torchvision $TV (default 0.26.0) from the registry, with
#     --no-deps (the torch wheel alone is ~530 MB); torch's own small dependencies and numpy,
#     pandas, rich, matplotlib, joblib (what the GPU machine has), no Hydra;
#   - the CUDA 13 libraries the torch wheel links against are not downloaded (several GB): they
#     are taken from this checkout's .venv (torch 2.14.1+cu130 installed them) through a .pth;
#   - the bundle built for this machine's Python (scripts/make_gpu_bundle.sh --python-version);
#     the GPU machine has Python 3.12, which Debian 12 does not package here.
#
# Usage (from the repository root, ~10 minutes on 2 shared cores): scripts/rehearse_gpu_on_cpu.sh
#   WORK (default /tmp/cl_runner_gpu_rehearsal) holds the venv, the wheels, the bundle and out/.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/cl_runner_gpu_rehearsal}
TORCH=${TORCH:-2.11.0}
TV=${TV:-0.26.0}
HOST_PY=${HOST_PY:-python3}
mkdir -p "$WORK/wheels"
[ -x "$WORK/venv/bin/python" ] || "$HOST_PY" -m venv "$WORK/venv"
VPY=$WORK/venv/bin/python
if ! "$VPY" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH')" \
        2>/dev/null; then
    ls "$WORK"/wheels/torch-"$TORCH"-*.whl >/dev/null 2>&1 || \
        "$VPY" -m pip download --quiet --no-deps "torch==$TORCH" "torchvision==$TV" -d "$WORK/wheels"
    "$VPY" -m pip install --quiet --no-deps "$WORK"/wheels/torch-"$TORCH"-*.whl \
        "$WORK"/wheels/torchvision-"$TV"-*.whl
    "$VPY" -m pip install --quiet numpy pandas rich matplotlib joblib pillow filelock \
        "typing-extensions>=4.10" "sympy>=1.13.3" networkx jinja2 fsspec "setuptools<82"
fi
site=$("$VPY" -c "import site; print(site.getsitepackages()[0])")
nvidia=$(.venv/bin/python -c "import nvidia, os; print(list(nvidia.__path__)[0])")
mkdir -p "$WORK/cudalibs" && ln -sfn "$nvidia" "$WORK/cudalibs/nvidia"
echo "$WORK/cudalibs" > "$site/zz_cuda_libraries.pth"
"$VPY" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', \
torchvision.__version__)"

PY_VERSION=$("$VPY" -c "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')")
scripts/make_gpu_bundle.sh --python-version "$PY_VERSION" --out "$WORK/bundle" > /dev/null
isolate=()
unshare -n true 2>/dev/null && isolate=(unshare -n)  # no network, as on the GPU machine
rm -rf "$WORK/out"
env -u CL_RUNNER_DATA BENCH_DEVICE=cpu BENCH_SCALE=tiny SMOKE_LIMIT=${SMOKE_LIMIT:-400} \
    BUDGET=${BUDGET:-1500} PYTHON="$VPY" BUNDLE="$WORK/bundle" OUT="$WORK/out" \
    "${isolate[@]}" scripts/bench_gpu.sh
