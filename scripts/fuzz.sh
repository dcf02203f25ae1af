#!/bin/sh
# Builds the libFuzzer targets (tests/fuzz) with clang under ASan+UBSan and
# runs each for SECONDS (default 30) on its committed seeds; a crash stops
# the script with the input that caused it.  A longer campaign:
#   scripts/fuzz.sh 3600
set -eu
secs=${1:-30}
cd "$(dirname "$0")/.."
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DAT_FUZZ=ON -DAT_SANITIZE=ON -DAT_BUILD_TESTS=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=${AT_FUZZ_TARGETS:-"fuzz_audio fuzz_multipart fuzz_weights fuzz_tts_text fuzz_server fuzz_onnx fuzz_tokenizer fuzz_subtitle fuzz_mt_text fuzz_wyoming fuzz_spm fuzz_vits"}
# shellcheck disable=SC2086
cmake --build build-fuzz -j"$(nproc)" --target $targets >/dev/null
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export LSAN_OPTIONS="suppressions=$(pwd)/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
for t in $targets; do
    mkdir -p "build-fuzz/corpus/$t" "build-fuzz/crashes/$t" build-fuzz/logs
    echo "== $t, $secs s"
    # fuzz_server's threads hold memory between inputs, so a leak check
    # after each input scans a live server (slow, and racy); LeakSanitizer
    # still checks the whole process when the run ends.
    extra=
    [ "$t" = fuzz_server ] && extra=-detect_leaks=0
    # shellcheck disable=SC2086
    "build-fuzz/tests/fuzz/$t" $extra -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="build-fuzz/crashes/$t/" \
        "build-fuzz/corpus/$t" "tests/fuzz/seeds/$t" >"build-fuzz/logs/$t.log" 2>&1 || true
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|INFO: Done|==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written)" "build-fuzz/logs/$t.log" || true
    if ls "build-fuzz/crashes/$t/"* >/dev/null 2>&1; then
        # the report's first frames say where (the full log stays behind)
        grep -E -A8 "^==[0-9]+==ERROR|^(Direct|Indirect) leak" "build-fuzz/logs/$t.log" | head -80 >&2
        echo "fuzz: $t found a crash: $(ls "build-fuzz/crashes/$t/")" >&2
        exit 1
    fi
done
echo "fuzz: no crash"
