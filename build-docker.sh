#!/bin/sh
# Builds the service images with BuildKit and prints their sizes.
#
#   ./build-docker.sh                 asr_streaming, translate, tts, pipeline (CPU)
#   ./build-docker.sh --gpu           also asr_streaming's GPU variant
#   ./build-docker.sh --gpu-only      only the GPU variant
#   ./build-docker.sh tts             some of them
#
# Images: audio-translator/SERVICE:VERSION (VERSION from CMakeLists.txt, or
# AT_VERSION), the GPU one audio-translator/asr_streaming:VERSION-gpu.
# Environment:
#   BASE_IMAGE          CPU base, default debian:bookworm-slim
#   CUDA_VERSION, CUDA_DEVEL_IMAGE, CUDA_RUNTIME_IMAGE
#                       GPU bases (see docker/asr_streaming.Dockerfile)
#   BUILD_JOBS          compile jobs inside a build, default 2
#   AT_BUILD_PROGRESS   auto (default), plain or tty
#   AT_BUILD_NETWORK    e.g. host, when build containers cannot reach the
#                       package mirrors through Docker's bridge
#   DOCKER              the docker client, default /usr/bin/docker if present
set -eu
cd "$(dirname "$0")"

if [ -z "${DOCKER:-}" ]; then
    # /usr/bin/docker is the distribution's client; a newer static client
    # elsewhere on PATH may insist on the buildx plugin for BuildKit.
    if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
export DOCKER_BUILDKIT=1

VERSION="${AT_VERSION:-$(sed -n 's/^project([a-z_]* VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)}"
BASE_IMAGE="${BASE_IMAGE:-debian:bookworm-slim}"
CUDA_VERSION="${CUDA_VERSION:-12.6.3}"
CUDA_DEVEL_IMAGE="${CUDA_DEVEL_IMAGE:-nvidia/cuda:$CUDA_VERSION-devel-ubuntu24.04}"
CUDA_RUNTIME_IMAGE="${CUDA_RUNTIME_IMAGE:-nvidia/cuda:$CUDA_VERSION-runtime-ubuntu24.04}"
BUILD_JOBS="${BUILD_JOBS:-2}"

cpu=""
gpu=0
for a in "$@"; do
    case "$a" in
    --gpu) gpu=1 ;;
    --gpu-only) gpu=1; cpu=none ;;
    asr_streaming|translate|tts|pipeline) [ "$cpu" = none ] || cpu="$cpu $a" ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-docker.sh: unknown argument '$a' (try --help)" >&2; exit 2 ;;
    esac
done
[ -z "$cpu" ] && cpu="asr_streaming translate tts pipeline"
[ "$cpu" = none ] && cpu=""

if ! "$DOCKER" info >/dev/null 2>&1; then
    echo "build-docker.sh: cannot talk to the Docker daemon ($DOCKER info failed)." >&2
    echo "Is dockerd running, and may this user use it (root or the docker group)?" >&2
    exit 1
fi

set -- --progress="${AT_BUILD_PROGRESS:-auto}" --build-arg AT_VERSION="$VERSION" \
    --build-arg BUILD_JOBS="$BUILD_JOBS"
[ -n "${AT_BUILD_NETWORK:-}" ] && set -- "$@" --network "$AT_BUILD_NETWORK"

built=""
for s in $cpu; do
    echo "==> audio-translator/$s:$VERSION (base $BASE_IMAGE)"
    t0=$(date +%s)
    "$DOCKER" build "$@" -f "docker/$s.Dockerfile" --build-arg BASE_IMAGE="$BASE_IMAGE" \
        -t "audio-translator/$s:$VERSION" .
    echo "    built in $(( $(date +%s) - t0 )) s"
    built="$built audio-translator/$s:$VERSION=$BASE_IMAGE"
done
if [ "$gpu" = 1 ]; then
    echo "==> audio-translator/asr_streaming:$VERSION-gpu (base $CUDA_RUNTIME_IMAGE)"
    t0=$(date +%s)
    "$DOCKER" build "$@" -f docker/asr_streaming.Dockerfile --build-arg VARIANT=gpu \
        --build-arg CUDA_DEVEL_IMAGE="$CUDA_DEVEL_IMAGE" \
        --build-arg CUDA_RUNTIME_IMAGE="$CUDA_RUNTIME_IMAGE" \
        -t "audio-translator/asr_streaming:$VERSION-gpu" .
    echo "    built in $(( $(date +%s) - t0 )) s"
    built="$built audio-translator/asr_streaming:$VERSION-gpu=$CUDA_RUNTIME_IMAGE"
fi

# Sizes in MB of 10^6 bytes, as `docker images` shows them.
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1000000 }'; }
echo
printf '%-44s %9s   %-40s %9s\n' IMAGE SIZE_MB BASE ADDS_MB
for pair in $built; do
    img="${pair%%=*}"
    base="${pair#*=}"
    size=$("$DOCKER" image inspect -f '{{.Size}}' "$img")
    bsize=$("$DOCKER" image inspect -f '{{.Size}}' "$base" 2>/dev/null || echo "")
    if [ -n "$bsize" ]; then
        printf '%-44s %9s   %-40s %9s\n' "$img" "$(mb "$size")" "$base" "$(mb $((size - bsize)))"
    else
        printf '%-44s %9s   %-40s %9s\n' "$img" "$(mb "$size")" "$base" "?"
    fi
done
