#!/bin/sh
# Prints, one a line, the Debian/Ubuntu packages that provide the shared
# libraries BINARY is linked against (its whole ldd closure).  The build
# stages run it on the binary they just linked; the runtime stages install
# exactly that list, so a runtime image carries the libraries its binary
# loads and nothing else, on Debian or on Ubuntu (the CUDA bases) alike.
#
#   runtime-packages.sh BINARY
#
# Fails when a library is missing or owned by no package.
set -eu
bin="$1"
out=$(ldd "$bin") || { echo "runtime-packages: ldd $bin failed" >&2; exit 1; }
if printf '%s\n' "$out" | grep -q 'not found'; then
    printf '%s\n' "$out" | grep 'not found' >&2
    echo "runtime-packages: $bin has unresolved libraries" >&2
    exit 1
fi
owner() {
    # dpkg records the path a package ships; with a merged /usr the loader
    # may report /lib/... for /usr/lib/... or the reverse, and alternatives
    # (libblas.so.3) are symlinks: try each spelling.
    for p in "$1" "$(readlink -f "$1")"; do
        for q in "$p" "/usr$p" "${p#/usr}"; do
            o=$(dpkg -S "$q" 2>/dev/null | grep -v '^diversion' | head -n1 | cut -d: -f1) || true
            [ -n "$o" ] && { echo "$o"; return 0; }
        done
    done
    return 1
}
libs=$(printf '%s\n' "$out" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
pkgs=""
for lib in $libs; do
    o=$(owner "$lib") || { echo "runtime-packages: no package owns $lib" >&2; exit 1; }
    pkgs="$pkgs $o"
done
printf '%s\n' $pkgs | sort -u
