#!/bin/sh
# Test data that cannot live in git: Silero VAD's ONNX files (MIT), taken
# from npm's @ricky0123/vad-web package because the npm registry is
# reachable where GitHub may not be.  Each file is checked against the
# SHA-256 that upstream's release tags give (see src/engines/asr/whisper/
# models.c).  Idempotent: files already in place and correct are kept.
set -eu
cd "$(dirname "$0")/.."
DEST=tests/data/fetched
VERSION=0.0.31
URL="https://registry.npmjs.org/@ricky0123/vad-web/-/vad-web-$VERSION.tgz"
# file in the package | name here | sha256
FILES="silero_vad_v5.onnx silero_vad-v5.onnx 2623a2953f6ff3d2c1e61740c6cdb7168133479b267dfef114a4a3cc5bdd788f
silero_vad_v6.onnx silero_vad-v6.onnx 1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3
silero_vad_legacy.onnx silero_vad-v4.onnx a35ebf52fd3ce5f1469b2a36158dba761bc47b973ea3382b3186ca15b1f5af28"

ok() { [ -f "$DEST/$1" ] && echo "$2  $DEST/$1" | sha256sum -c --status; }

need=0
echo "$FILES" | { while read -r _ name sum; do ok "$name" "$sum" || exit 1; done; } || need=1
[ "$need" = 0 ] && exit 0

mkdir -p "$DEST"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching $URL"
curl -fsSL --retry 5 --retry-delay 2 -o "$tmp/pkg.tgz" "$URL"
tar -xzf "$tmp/pkg.tgz" -C "$tmp"
echo "$FILES" | while read -r file name sum; do
    cp "$tmp/package/dist/$file" "$DEST/$name.tmp"
    if ! echo "$sum  $DEST/$name.tmp" | sha256sum -c --status; then
        echo "fetch-test-data: $file does not have sha256 $sum" >&2
        rm -f "$DEST/$name.tmp"
        exit 1
    fi
    mv "$DEST/$name.tmp" "$DEST/$name"
done
echo "test data in $DEST"
