#!/usr/bin/env bash
# The GPU checks and benchmarks, in one command, for a lent GPU machine whose
# python3 already holds torch and transformers (this workplace's CUDA image).
#
#   bash bench/gpu_session.sh [PART ...]     PART: tests probe extractors jukebox
#
# Missing pure-Python dependencies travel as wheels in .whl/ (see bench/RESULTS.md,
# "GPU machine"); each part's output is kept in $OUT/<part>.log when OUT is set.
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
