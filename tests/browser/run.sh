#!/bin/sh
# ctest entry for the browser test: installs playwright-core (pinned by
# package-lock.json) into $AT_BUILD_DIR/browser, then runs the test.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
sh "$here/../common/npm-ci.sh" "$here" "${AT_BUILD_DIR:?}/browser" playwright-core
exec node "$here/pipeline_page.test.mjs"
