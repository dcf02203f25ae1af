#!/bin/sh
# ctest entry for the client tests: installs the pinned clients (the
# official openai package, package-lock.json) into $AT_BUILD_DIR/clients,
# then runs each test against our binaries.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
out="${AT_BUILD_DIR:?}/clients"
sh "$here/../common/npm-ci.sh" "$here" "$out" openai
# node resolves packages from the test file's folder upwards: run the
# tests from a copy beside node_modules
cp "$here"/*.mjs "$out/"
cd "$out"
for t in "$@"; do
    echo "== $t"
    node "$t"
done
