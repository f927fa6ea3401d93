#!/usr/bin/env bash
# The GPU checks and benchmarks, in one command, for a lent GPU machine whose
# python3 already holds torch and transformers (this workplace's CUDA image).
#
#   bash bench/gpu_session.sh [PART ...]     PART: tests probe extractors jukebox
#
# What that image lacked (2026-11-23: torch 2.11, transformers 5.17 were there) travels as
# cp312 manylinux wheels in .whl/ (git-ignored), fetched where pip works with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#     jukebox-infer==0.1.2 unidecode==1.4.0 mir_eval==0.8.2 jsonschema==4.26.0 \
#     referencing==0.37.0 rpds-py==2026.9.1 jsonschema-specifications==2025.9.1 \
#     librosa==0.11.0 audioread==3.1.0 soxr==1.1.0 pooch==1.9.0 platformdirs==4.14.7 \
#     decorator==5.3.1 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12
# Each part's output is kept in $OUT/<part>.log (default /tmp/mirprobe-gpu).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/mirprobe-gpu}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
parts=${*:-tests probe extractors jukebox}

run_part() {  # name, time limit (s), command...
    local name=$1 limit=$2
    shift 2
    echo "=== $name: $*"
    local start=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s"
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c 'import torch, transformers, numpy; print("torch", torch.__version__, "transformers",
    transformers.__version__, "numpy", numpy.__version__)' | tee -a "$OUT/gpu.txt"

for part in $parts; do
    case $part in
    tests) run_part tests 200 python3 -m pytest -p no:cacheprovider --noconftest -q \
        tests/test_gpu.py ;;
    probe) run_part probe 300 python3 bench/probe_grid.py --device cuda --max-steps 32 ;;
    probe256) run_part probe256 400 python3 bench/probe_grid.py --device cuda --max-steps 256 ;;
    probe256-gtzan) run_part probe256-gtzan 200 python3 bench/probe_grid.py --device cuda \
        --max-steps 256 --problems gtzan-like ;;
    extractors) run_part extractors 300 python3 bench/extractors.py --size real \
        --device cuda --batch 8 --seconds 30 --clips 32 --threads 8 ;;
    jukebox) run_part jukebox 500 python3 bench/jukebox_depth.py --real --device cuda \
        --clips 4 --threads 8 ;;
    *) echo "unknown part $part" ;;
    esac
done
