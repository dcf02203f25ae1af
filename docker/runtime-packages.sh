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
libs=$(printf '%s\n' "$out" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')

# dpkg records the path a package ships; with a merged /usr the loader may
# report /lib/... for /usr/lib/... or the reverse, and alternatives
# (libblas.so.3) are symlinks: ask for every spelling, in one dpkg call.
spellings() { # LIB
    r=$(readlink -f "$1")
    for p in "$1" "$r"; do
        echo "$p"
        case "$p" in /usr/*) echo "${p#/usr}" ;; *) echo "/usr$p" ;; esac
    done
}
all=""
for lib in $libs; do all="$all $(spellings "$lib" | tr '\n' ' ')"; done
# shellcheck disable=SC2086
owned=$(dpkg -S $all 2>/dev/null | grep -v '^diversion' || true)

pkgs=""
for lib in $libs; do
    pkg=""
    for p in $(spellings "$lib"); do
        pkg=$(printf '%s\n' "$owned" | awk -F': ' -v p="$p" '$2 == p { print $1; exit }')
        [ -n "$pkg" ] && break
    done
    [ -n "$pkg" ] || { echo "runtime-packages: no package owns $lib" >&2; exit 1; }
    pkgs="$pkgs ${pkg%%:*}"
done
# shellcheck disable=SC2086
printf '%s\n' $pkgs | sort -u
