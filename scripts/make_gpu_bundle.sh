#!/usr/bin/env bash
# Build gpu_bundle/ (git-ignored), what scripts/bench_gpu.sh needs on a GPU machine that has
# Python, torch + CUDA, torchvision, numpy, pandas, rich, matplotlib and joblib but no network,
# no Hydra and no ../shared (issue 31):
#
#   gpu_bundle/wheels/   hydra-core, omegaconf, antlr4-python3-runtime (an sdist: built here into
#                        a py3-none-any wheel), hydra-joblib-launcher, filelock (pure Python);
#                        quadprog and PyYAML (binary wheels for the target Python, --python-version)
#   gpu_bundle/data/MNIST/raw/*.gz   MNIST gzipped (the loader decompresses them beside them)
#   gpu_bundle/MANIFEST.txt          what is in it, the commit it was made at
#
# The pure-Python versions are those installed beside the interpreter that runs this script (the
# versions the tests ran with). About 13 MB in all: carried to the device machine with the run
# tool's carry=["gpu_bundle"] (64 MiB limit).
#
# Usage (from the repository root): scripts/make_gpu_bundle.sh [--python-version 3.12] [--out DIR]
#   PYTHON (default .venv/bin/python, else python3) runs pip; CL_RUNNER_DATA (default
#   ../shared/data) holds MNIST/raw/.
set -euo pipefail
cd "$(dirname "$0")/.."

PY_VERSION=3.12
OUT=gpu_bundle
while [ $# -gt 0 ]; do
    case "$1" in
        --python-version) PY_VERSION="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
DATA=${CL_RUNNER_DATA:-../shared/data}
[ -f "$DATA/MNIST/raw/train-images-idx3-ubyte" ] || { echo "no MNIST in $DATA/MNIST/raw" >&2; exit 1; }

version() {  # the installed version of a distribution, as the tests ran it
    "$PYTHON" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"
}
PURE=(hydra-core omegaconf hydra-joblib-launcher filelock)
BINARY=(quadprog PyYAML)

rm -rf "$OUT"
mkdir -p "$OUT/wheels" "$OUT/data/MNIST/raw"
pins=()
for dist in "${PURE[@]}"; do pins+=("$dist==$(version "$dist")"); done
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: -d "$OUT/wheels" "${pins[@]}"
# omegaconf 2.3 pins antlr4-python3-runtime 4.9.*, published as an sdist only: build its wheel
"$PYTHON" -m pip wheel --quiet --no-deps -w "$OUT/wheels" \
    "antlr4-python3-runtime==$(version antlr4-python3-runtime)"
binpins=()
for dist in "${BINARY[@]}"; do binpins+=("$dist==$(version "$dist")"); done
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
    --python-version "$PY_VERSION" --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d "$OUT/wheels" "${binpins[@]}"
for wheel in "$OUT"/wheels/*.whl; do  # only wheels the target machine can install
    case "$(basename "$wheel")" in
        *-py3-none-any.whl|*-py2.py3-none-any.whl|*-cp${PY_VERSION/./}-*) ;;
        *) echo "unexpected wheel for Python $PY_VERSION: $wheel" >&2; exit 1 ;;
    esac
done

for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte \
            t10k-labels-idx1-ubyte; do
    gzip -9 -n -c "$DATA/MNIST/raw/$name" > "$OUT/data/MNIST/raw/$name.gz"
done

{
    echo "gpu_bundle made $(date -u +%FT%TZ) at $(git log -1 --format='%h %s' | cut -c1-80)"
    echo "target Python $PY_VERSION; pure-Python versions from $PYTHON"
    (cd "$OUT" && find wheels data -type f -printf '%s\t%p\n' | sort -k2)
    echo "total $(du -sb "$OUT" | cut -f1) bytes"
} > "$OUT/MANIFEST.txt"
cat "$OUT/MANIFEST.txt"
