# asr_streaming: speech to text (OpenAI /v1/audio/transcriptions, WebSocket
# /v1/stream) on port 8003.
#
#   DOCKER_BUILDKIT=1 docker build -f docker/asr_streaming.Dockerfile -t audio-translator/asr_streaming:0.1.0 .
#   DOCKER_BUILDKIT=1 docker build -f docker/asr_streaming.Dockerfile --build-arg VARIANT=gpu \
#       -t audio-translator/asr_streaming:0.1.0-gpu .
#
# VARIANT=cpu (default): build and run on BASE_IMAGE (debian:bookworm-slim).
# VARIANT=gpu: build on the CUDA *devel* image with -DAT_CUDA=ON, run on the
# matching CUDA *runtime* image.  Only the stages of the chosen variant are
# built (BuildKit skips the others), so a CPU build never pulls CUDA images.
#
# Whisper models are not in the image: mount the model cache volume on
# /models and point AT_WHISPER_MODEL (or --model) at a file there.  Without
# one, pocketsphinx (in the image) answers.
#
# No "# syntax=" line on purpose: the Dockerfile frontend built into the
# daemon is used, so no registry is needed to build.

ARG VARIANT=cpu
ARG BASE_IMAGE=debian:bookworm-slim
# Ubuntu 24.04, not 22.04: 22.04's libsndfile (1.0.31) predates MP3
# support (SF_FORMAT_MPEG), which src/core/audio.c uses.
ARG CUDA_VERSION=12.6.3
ARG CUDA_DEVEL_IMAGE=nvidia/cuda:${CUDA_VERSION}-devel-ubuntu24.04
ARG CUDA_RUNTIME_IMAGE=nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu24.04

############################ build stages ############################

FROM ${BASE_IMAGE} AS build-cpu
ARG DEBIAN_FRONTEND=noninteractive
# System packages: compilers, CMake and every engine's -dev package (the
# CMake configure checks them all).  apt's downloads and lists live in
# BuildKit cache mounts, shared by every image of the project.
RUN --mount=type=cache,id=at-apt-cache-bookworm,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,id=at-apt-lists-bookworm,target=/var/lib/apt/lists,sharing=locked \
    set -eu; rm -f /etc/apt/apt.conf.d/docker-clean; \
    apt-get update -q; \
    apt-get install -y -q --no-install-recommends \
        gcc g++ libc6-dev make cmake pkg-config ccache \
        libwebsockets-dev libcjson-dev libsndfile1-dev libsoxr-dev zlib1g-dev libminizip-dev \
        libcurl4-openssl-dev libpocketsphinx-dev libsphinxbase-dev libespeak-ng-dev flite1-dev libcld2-dev libvo-aacenc-dev
ENV AT_CMAKE_FLAGS=""

FROM ${CUDA_DEVEL_IMAGE} AS build-gpu
ARG DEBIAN_FRONTEND=noninteractive
# The CUDA devel image brings gcc and nvcc; add CMake and the -dev packages
# (Ubuntu 24.04 has the same names as Debian 12).
RUN --mount=type=cache,id=at-apt-cache-noble,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,id=at-apt-lists-noble,target=/var/lib/apt/lists,sharing=locked \
    set -eu; rm -f /etc/apt/apt.conf.d/docker-clean; \
    apt-get update -q; \
    apt-get install -y -q --no-install-recommends \
        gcc g++ libc6-dev make cmake pkg-config ccache \
        libwebsockets-dev libcjson-dev libsndfile1-dev libsoxr-dev zlib1g-dev libminizip-dev \
        libcurl4-openssl-dev libpocketsphinx-dev libsphinxbase-dev libespeak-ng-dev flite1-dev libcld2-dev libvo-aacenc-dev
ENV AT_CMAKE_FLAGS="-DAT_CUDA=ON"

FROM build-${VARIANT} AS build
ARG VARIANT
ARG BUILD_JOBS=2
COPY docker/runtime-packages.sh /usr/local/bin/runtime-packages
WORKDIR /src
# Dependency manifest: the top CMakeLists.txt names, in its top-level
# pkg_check_modules() lines, every library the build needs.  Check them
# against the system packages before the source comes in, so a missing
# -dev package fails here, by name, and this layer stays cached until the
# manifest changes.
COPY CMakeLists.txt ./
RUN mods=$(sed -n 's/^pkg_check_modules([A-Z0-9_]* REQUIRED \(IMPORTED_TARGET \)\{0,1\}\(.*\))$/\2/p' CMakeLists.txt); \
    echo "pkg-config modules: $mods"; pkg-config --print-errors --exists $mods
# The source: what .dockerignore lets through (CMakeLists.txt, cmake/,
# src/, web/).
COPY . .
# A fresh build tree each time, compiled through ccache (its cache is a
# BuildKit cache mount shared by every image): after a one-file change
# only that file is compiled again; the rest are cache hits, then one link.
# Only this service's binary is built; no tests.
RUN --mount=type=cache,id=at-ccache-${VARIANT},target=/ccache \
    set -eu; export CCACHE_DIR=/ccache; \
    cmake -S . -B /tmp/build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAT_BUILD_TESTS=OFF \
          -DCMAKE_C_COMPILER_LAUNCHER=ccache $AT_CMAKE_FLAGS >/dev/null; \
    cmake --build /tmp/build --target asr_streaming -j"$BUILD_JOBS"; \
    mkdir -p /out; install -s /tmp/build/asr_streaming /out/asr_streaming; \
    runtime-packages /out/asr_streaming >/out/runtime-packages; \
    echo "runtime packages:" $(cat /out/runtime-packages)

############################ runtime stages ############################

# AT_BASE_DIST names the distribution under the image; it also keys the apt
# cache mounts, so the CPU image shares its cache with the build stage and
# the other two images.
FROM ${BASE_IMAGE} AS runtime-cpu
ENV AT_BASE_DIST=bookworm
FROM ${CUDA_RUNTIME_IMAGE} AS runtime-gpu
ENV AT_BASE_DIST=noble

FROM runtime-${VARIANT} AS runtime
ARG DEBIAN_FRONTEND=noninteractive
ARG AT_VERSION=0.1.0
LABEL org.opencontainers.image.title="audio-translator asr_streaming" \
      org.opencontainers.image.version="${AT_VERSION}" \
      org.opencontainers.image.source="https://github.com/audio-translator/audio-translator"
# System packages: the libraries the binary is linked against (the list the
# build stage derived from ldd) and the pocketsphinx English model.
# No compiler, no -dev package.  The dpkg excludes keep out files this
# service never reads (see docs/docker.md).
COPY --from=build /out/runtime-packages /usr/local/share/audio-translator/runtime-packages
RUN --mount=type=cache,id=at-apt-cache-${AT_BASE_DIST},target=/var/cache/apt,sharing=locked \
    --mount=type=cache,id=at-apt-lists-${AT_BASE_DIST},target=/var/lib/apt/lists,sharing=locked \
    set -eu; \
    printf '%s\n' \
        'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
        'path-exclude /usr/share/locale/*' 'path-exclude /usr/share/lintian/*' \
        'path-exclude /usr/share/X11/locale/*' \
        'path-exclude /usr/lib/x86_64-linux-gnu/espeak-ng-data/*' \
        'path-exclude /usr/lib/x86_64-linux-gnu/libflite_cmu_time_awb.so*' \
        'path-exclude /usr/lib/x86_64-linux-gnu/libflite_cmu_us_kal.so*' \
        'path-exclude /usr/lib/x86_64-linux-gnu/libflite_cmu_grapheme_*' \
        'path-exclude /usr/lib/x86_64-linux-gnu/libflite_cmu_indic_*' \
        'path-exclude /usr/share/pocketsphinx/model/en-us/en-us-phone.lm.bin' \
        >/etc/dpkg/dpkg.cfg.d/audio-translator; \
    if [ -f /etc/apt/apt.conf.d/docker-clean ]; then mv /etc/apt/apt.conf.d/docker-clean /tmp/; fi; \
    apt-get update -q; \
    pkgs=""; \
    for p in $(cat /usr/local/share/audio-translator/runtime-packages) pocketsphinx-en-us; do \
        dpkg -s "$p" >/dev/null 2>&1 || pkgs="$pkgs $p"; \
    done; \
    apt-get install -y -q --no-install-recommends $pkgs; \
    if [ -f /tmp/docker-clean ]; then mv /tmp/docker-clean /etc/apt/apt.conf.d/; fi; \
    rm -rf /var/log/apt /var/log/dpkg.log
# appuser (uid 1000) owns /models, so a fresh named volume mounted there
# starts owned by it.
RUN set -eu; \
    if getent passwd 1000 >/dev/null; then userdel --remove "$(getent passwd 1000 | cut -d: -f1)"; fi; \
    if getent group 1000 >/dev/null; then groupdel "$(getent group 1000 | cut -d: -f1)"; fi; \
    groupadd --gid 1000 appuser; \
    useradd --uid 1000 --gid 1000 --create-home --shell /usr/sbin/nologin appuser; \
    install -d -o appuser -g appuser -m 0755 /models
# Source last: the binary.  Fail the build here, not at start-up, if a
# library is missing.
COPY --from=build /out/asr_streaming /usr/local/bin/asr_streaming
RUN /usr/local/bin/asr_streaming --help >/dev/null
USER appuser
WORKDIR /home/appuser
# AT_MODELS_DIR: model names (AT_WHISPER_MODEL=base.en, the Silero VAD
# that --vad auto looks for) resolve in the shared model volume.
ENV AT_HOST=0.0.0.0 \
    AT_PORT=8003 \
    AT_MODELS_DIR=/models
EXPOSE 8003
# No curl in the image: bash's /dev/tcp asks /health.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${AT_PORT:-8003} && printf 'GET /health HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
# exec form: the service is PID 1 and gets SIGTERM itself (it drains, exits 0).
ENTRYPOINT ["/usr/local/bin/asr_streaming"]
