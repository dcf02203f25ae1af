#!/bin/sh
# ctest entry for the browser test: installs playwright-core (pinned by
# package-lock.json) into $AT_BUILD_DIR/browser, then runs the test.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
out="${AT_BUILD_DIR:?}/browser"
mkdir -p "$out"
cp "$here/package.json" "$here/package-lock.json" "$out/"
if [ ! -f "$out/node_modules/playwright-core/package.json" ] ||
   ! cmp -s "$here/package-lock.json" "$out/node_modules/.package-lock.json.at"; then
    (cd "$out" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$here/package-lock.json" "$out/node_modules/.package-lock.json.at"
fi
exec node "$here/pipeline_page.test.mjs"
