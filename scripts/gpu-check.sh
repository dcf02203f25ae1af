#!/bin/sh
# Every GPU check of the CUDA backend (issue 14), in one run, on a machine
# with an NVIDIA GPU:
#   1. the backend's operations against double-precision references
#      (test_backend's "cuda" group; a skip is a failure here);
#   2. Whisper on the GPU against the Hugging Face oracle: encoder output
#      and logits within 2e-2, greedy tokens where the reference's margin
#      exceeds 0.1, batched equal to unbatched within 1e-3
#      (test_whisper_model's test_whisper_model_gpu);
#   3. the speed table (bench_whisper_model --device 0) for the official
#      shapes, to put beside whisper.cpp's CUDA whisper-bench.
#
#   scripts/gpu-check.sh [BUILD_DIR]
#
# BUILD_DIR (default build-gpu) is configured and built here with
# -DAT_CUDA=ON for the GPU present, unless it already holds the three
# binaries (built elsewhere: cmake -DAT_CUDA=ON
# -DCMAKE_CUDA_ARCHITECTURES=90 for an H100/H200, then carried over with
# the shared libraries ldd lists; set LD_LIBRARY_PATH to them).
# AT_GPU_PRESETS (default tiny,base,small,large-v3,large-v3-turbo) picks
# the bench's models; AT_GPU_BENCH=0 skips the bench.
set -eu
cd "$(dirname "$0")/.."
B=${1:-build-gpu}
fail() {
    echo "gpu-check: FAILED: $*" >&2
    exit 1
}

command -v nvidia-smi >/dev/null && nvidia-smi -L || echo "(no nvidia-smi)"
if [ ! -x "$B/tests/compute/test_backend" ] || [ ! -x "$B/tests/whisper/test_whisper_model" ] ||
    [ ! -x "$B/bench/whisper/bench_whisper_model" ]; then
    cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DAT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=native
    cmake --build "$B" -j"$(nproc)" --target test_backend test_whisper_model bench_whisper_model
fi
export AT_SOURCE_DIR="$PWD" AT_BUILD_DIR="$PWD/$B" AT_ORACLES_DIR="$PWD/tests/data/oracles"

echo "== 1. backend operations on the GPU"
out=$("$B/tests/compute/test_backend" 2>&1) || {
    echo "$out"
    fail "test_backend"
}
echo "$out"
if echo "$out" | grep -q "SKIPPED"; then fail "the cuda tests were skipped (no GPU seen)"; fi

echo "== 2. Whisper on the GPU against the Hugging Face oracle"
out=$("$B/tests/whisper/test_whisper_model" 2>&1) || {
    echo "$out"
    fail "test_whisper_model"
}
echo "$out" | grep -E "GPU:|gpu|PASSED|FAILED"
if echo "$out" | grep -q "SKIPPED"; then fail "test_whisper_model_gpu was skipped"; fi

if [ "${AT_GPU_BENCH:-1}" = 1 ]; then
    echo "== 3. speed (random weights of the official shapes, f16)"
    "$B/bench/whisper/bench_whisper_model" --device 0 --threads 1 --tokens 32 --types f16 \
        --presets "${AT_GPU_PRESETS:-tiny,base,small,large-v3,large-v3-turbo}"
fi
echo "gpu-check: all passed"
