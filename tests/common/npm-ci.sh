#!/bin/sh
# Installs the npm packages a test folder pins (its package.json and
# package-lock.json) into OUT, unless the same lock is installed there
# already.  Used by the browser and client tests.
#
#   npm-ci.sh SRC_DIR OUT_DIR PACKAGE   (PACKAGE: one that must be there)
set -eu
src="$1" out="$2" pkg="$3"
mkdir -p "$out"
cp "$src/package.json" "$src/package-lock.json" "$out/"
if [ ! -f "$out/node_modules/$pkg/package.json" ] ||
   ! cmp -s "$src/package-lock.json" "$out/node_modules/.package-lock.json.at"; then
    (cd "$out" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$src/package-lock.json" "$out/node_modules/.package-lock.json.at"
fi
