#!/bin/sh
# ctest entry for the deployment checks: installs the pinned validator
# (kubernetes-models, yaml; package-lock.json) into $AT_BUILD_DIR/deploy,
# then renders and checks deploy/kubernetes (check.mjs).
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
out="${AT_BUILD_DIR:?}/deploy"
sh "$here/../common/npm-ci.sh" "$here" "$out" kubernetes-models
# node resolves packages from the script's folder upwards: run from a
# copy beside node_modules
cp "$here"/*.mjs "$out/"
AT_SOURCE_DIR="$(cd "$here/../.." && pwd)" exec node "$out/check.mjs"
