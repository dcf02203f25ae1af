#!/bin/sh
# One command for a newcomer and for CI: install what is missing, check
# the style, build, run clang's static analyzer, run every test, compile
# the other build types, then
# build again with AddressSanitizer + UndefinedBehaviorSanitizer and run
# every test there too, fuzz each parser for 30 s (scripts/fuzz.sh,
# clang's libFuzzer), and finally build and run the container
# deployment for real, with Compose and as a Docker Swarm stack
# (scripts/docker-check.sh; needs root to start dockerd; AT_SKIP_DOCKER=1
# skips it on a workstation).
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/fetch-test-data.sh

# One style, written down in .clang-format.
if ! git ls-files '*.c' '*.h' '*.cu' | xargs clang-format --dry-run --Werror; then
    echo "style: run  git ls-files '*.c' '*.h' '*.cu' | xargs clang-format -i" >&2
    exit 1
fi

./scripts/build.sh build
# clang's static analyzer on the same compile commands (scripts/analyze.sh)
./scripts/analyze.sh build
(cd build && ctest --output-on-failure)

# Every standard build type compiles with warnings as errors (each
# optimisation level warns about different things).
for type in Debug Release MinSizeRel; do
    ./scripts/build.sh "build-$type" -DCMAKE_BUILD_TYPE="$type"
done

./scripts/build.sh build-asan -DAT_SANITIZE=ON
# Leaks inside the Debian libraries themselves are listed in tests/lsan.supp.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1"
export LSAN_OPTIONS="suppressions=$(pwd)/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
(cd build-asan && ctest --output-on-failure)

# libFuzzer targets (clang, ASan+UBSan), 30 s each on their seeds.
./scripts/fuzz.sh "${AT_FUZZ_SECONDS:-30}"

if [ "${AT_SKIP_DOCKER:-0}" != 1 ]; then
    ./scripts/docker-check.sh
fi
