#!/bin/sh
# Installs the Debian packages audio-translator needs to build, run and
# test.  Idempotent: does nothing when everything is already installed.
set -eu

PACKAGES="build-essential cmake pkg-config clang clang-format clang-tidy git
libwebsockets-dev libcjson-dev libsndfile1-dev libsoxr-dev libopenblas-dev
libcurl4-openssl-dev zlib1g-dev libminizip-dev libcmocka-dev curl ca-certificates
libpocketsphinx-dev libsphinxbase-dev pocketsphinx-en-us pocketsphinx-testdata
apertium apertium-en-es
libespeak-ng-dev espeak-ng-data flite1-dev libcld2-dev g++
libvo-aacenc-dev faad
chromium nodejs"
# The browser test needs npm; a nodejs from elsewhere (NodeSource) ships
# its own and conflicts with Debian's npm package.
command -v npm >/dev/null 2>&1 || PACKAGES="$PACKAGES npm"
# The deploy test renders the Kubernetes manifests with `kubectl
# kustomize`: Debian's kubernetes-client, unless a kubectl is there already
# (Google's kubectl package conflicts with it).
command -v kubectl >/dev/null 2>&1 || PACKAGES="$PACKAGES kubernetes-client"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "Installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
