#!/bin/sh
# One command for a newcomer: install what is missing, build, and start
# every service in one process (asr_streaming :8003, translate :8004,
# tts :8005).  Extra arguments go to `audio-translator serve`.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh build
echo "Starting: asr_streaming http://localhost:8003  translate http://localhost:8004  tts http://localhost:8005"
echo "          pipeline + web page http://localhost:8000/"
exec ./build/audio-translator serve "$@"
