#!/bin/sh
# bench/nmt.sh - translation model figures (docs/figures.md): writes random-
# weight folders of the published shapes (OPUS-MT base, NLLB-200 600M; f16)
# into $AT_NMT_BENCH_DIR (default /tmp/at-nmt-bench) when they are missing,
# then runs bench_nmt on each: greedy and 4 beams, batches of 1 and 16
# sentences, 1 and 2 threads.  About 4 minutes on 2 cores.
#
#   bench/nmt.sh [BUILD_DIR]      (default: build)
set -eu
BUILD=${1:-build}
DIR=${AT_NMT_BENCH_DIR:-/tmp/at-nmt-bench}
for exe in "$BUILD/audio-translator" "$BUILD/bench/bench_nmt"; do
    if [ ! -x "$exe" ]; then
        echo "nmt.sh: $exe missing: cmake --build $BUILD --target audio-translator bench_nmt" >&2
        exit 1
    fi
done
for preset in opus-mt-base nllb-600m; do
    if [ ! -f "$DIR/$preset-f16/model.safetensors" ]; then
        nice "$BUILD/audio-translator" nmt-random-model --preset "$preset" --type f16 --out "$DIR/$preset-f16"
    fi
done
lscpu | grep -E '^(Model name|Model):' | sed 's/  */ /g'
uptime
nice "$BUILD/bench/bench_nmt" "$DIR/opus-mt-base-f16" --label opus-mt-base --reps 3
nice "$BUILD/bench/bench_nmt" "$DIR/nllb-600m-f16" --label nllb-600m --reps 3
# the same with the matrices quantized at load (--mt-q8): 2 threads
nice "$BUILD/bench/bench_nmt" "$DIR/opus-mt-base-f16" --label opus-mt-base-q8 --reps 3 --threads 2 --q8
nice "$BUILD/bench/bench_nmt" "$DIR/nllb-600m-f16" --label nllb-600m-q8 --reps 3 --threads 2 --q8
