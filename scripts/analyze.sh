#!/bin/sh
# clang's static analyzer (through clang-tidy) over every C file of src/
# that a configured build compiles (its compile_commands.json; default
# build/).  Any warning fails.
#
# The checks are the ones that find what the sanitizers see only when a
# run happens to take the path: values used before they are set (an FFT
# index computed from uninitialised locals overflowed only when the stack
# held large values), memory used after free or leaked, division by zero.
# The null-pointer checks are left out: the analyzer cannot see that
# cJSON_IsString(NULL) and its kind are false (cJSON is a shared library),
# so they flag every guarded read of a JSON field.  A finding the analyzer
# cannot prove impossible but we can is marked at its line:
#   /* analyzer: why it cannot happen
#    * NOLINTNEXTLINE(clang-analyzer-...) */
set -eu
build=${1:-build}
cd "$(dirname "$0")/.."
db="$build/compile_commands.json"
[ -f "$db" ] || { echo "analyze: no $db (configure the build first: scripts/build.sh $build)" >&2; exit 2; }
checks='-*,clang-analyzer-core.uninitialized.*,clang-analyzer-core.UndefinedBinaryOperatorResult'
checks="$checks,clang-analyzer-core.CallAndMessage,clang-analyzer-core.DivideZero,clang-analyzer-core.VLASize"
checks="$checks,clang-analyzer-core.StackAddressEscape,clang-analyzer-unix.Malloc,clang-analyzer-unix.MismatchedDeallocator"
checks="$checks,clang-analyzer-unix.cstring.BadSizeArg,clang-analyzer-unix.API"
src="$(pwd)/src/"
sed -n 's/^ *"file": "\(.*\)",*$/\1/p' "$db" | grep -F "$src" | grep '\.c$' | sort -u >"$build/analyze-files.txt"
echo "analyze: $(wc -l <"$build/analyze-files.txt") files of src/ with clang-tidy $(clang-tidy --version | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -n1)"
log="$build/analyze.log"
out="$build/analyze"
rm -rf "$out"
mkdir -p "$out"
# one report per file (named after its path), joined in order afterwards
# shellcheck disable=SC2016
xargs -P"$(nproc)" -n1 sh -c 'clang-tidy -p "$0" --quiet --checks="$1" "$3" >"$2/$(echo "$3" | tr / _)" 2>&1 || true' \
    "$build" "$checks" "$out" <"$build/analyze-files.txt"
while read -r f; do cat "$out/$(echo "$f" | tr / _)"; done <"$build/analyze-files.txt" >"$log"
if grep -qE '(warning|error): ' "$log"; then
    grep -E -A12 '(warning|error): ' "$log" >&2
    echo "analyze: $(grep -cE '(warning|error): ' "$log") findings (whole log: $log)" >&2
    exit 1
fi
echo "analyze: no findings"
