# pipeline: the speech-to-speech front door (web page GET /, WebSocket
# /v1/pipeline, GET /v1/config) on port 8000.  Its engines are clients of
# the asr_streaming, translate and tts services (AT_ASR_URL,
# AT_TRANSLATE_URL, AT_TTS_URL); it loads no model and needs no engine data.
# It also carries `audio-translator` with only the `models` command, which
# fills the models volume (the Kubernetes models-pull Job runs it).
#
#   DOCKER_BUILDKIT=1 docker build -f docker/pipeline.Dockerfile -t audio-translator/pipeline:0.1.0 .
#
# No "# syntax=" line on purpose: the Dockerfile frontend built into the
# daemon is used, so no registry is needed to build.

ARG BASE_IMAGE=debian:bookworm-slim

############################ build stage ############################

FROM ${BASE_IMAGE} AS build
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
# Only this service's binary is built, and the model cache tool
# (`audio-translator models`, for jobs that fill the models volume: it needs
# libcurl, which the pipeline links anyway, and the CA certificates for
# HTTPS); no tests.
RUN --mount=type=cache,id=at-ccache-cpu,target=/ccache \
    set -eu; export CCACHE_DIR=/ccache; \
    cmake -S . -B /tmp/build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAT_BUILD_TESTS=OFF \
          -DCMAKE_C_COMPILER_LAUNCHER=ccache $AT_CMAKE_FLAGS >/dev/null; \
    cmake --build /tmp/build --target pipeline audio-translator-models -j"$BUILD_JOBS"; \
    mkdir -p /out; install -s /tmp/build/pipeline /out/pipeline; \
    install -s /tmp/build/audio-translator-models /out/audio-translator; \
    { runtime-packages /out/pipeline; runtime-packages /out/audio-translator; echo ca-certificates; } | \
        sort -u >/out/runtime-packages; \
    echo "runtime packages:" $(cat /out/runtime-packages)

############################ runtime stage ############################

FROM ${BASE_IMAGE} AS runtime
ENV AT_BASE_DIST=bookworm
ARG DEBIAN_FRONTEND=noninteractive
ARG AT_VERSION=0.1.0
LABEL org.opencontainers.image.title="audio-translator pipeline" \
      org.opencontainers.image.version="${AT_VERSION}" \
      org.opencontainers.image.source="https://github.com/audio-translator/audio-translator"
# System packages: the libraries the binary is linked against (the list the
# build stage derived from ldd); no engine data: the engines are remote.
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
        >/etc/dpkg/dpkg.cfg.d/audio-translator; \
    if [ -f /etc/apt/apt.conf.d/docker-clean ]; then mv /etc/apt/apt.conf.d/docker-clean /tmp/; fi; \
    apt-get update -q; \
    pkgs=""; \
    for p in $(cat /usr/local/share/audio-translator/runtime-packages); do \
        dpkg -s "$p" >/dev/null 2>&1 || pkgs="$pkgs $p"; \
    done; \
    apt-get install -y -q --no-install-recommends $pkgs; \
    if [ -f /tmp/docker-clean ]; then mv /tmp/docker-clean /etc/apt/apt.conf.d/; fi; \
    rm -rf /var/log/apt /var/log/dpkg.log
# appuser (uid 1000); the service writes nothing outside /tmp.
RUN set -eu; \
    groupadd --gid 1000 appuser; \
    useradd --uid 1000 --gid 1000 --create-home --shell /usr/sbin/nologin appuser
# Source last: the binary.  Fail the build here, not at start-up, if a
# library is missing.
COPY --from=build /out/pipeline /out/audio-translator /usr/local/bin/
RUN /usr/local/bin/pipeline --help >/dev/null && /usr/local/bin/audio-translator --help >/dev/null
USER appuser
WORKDIR /home/appuser
ENV AT_HOST=0.0.0.0 \
    AT_PORT=8000
EXPOSE 8000
# No curl in the image: bash's /dev/tcp asks /health.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${AT_PORT:-8000} && printf 'GET /health HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
# exec form: the service is PID 1 and gets SIGTERM itself (it drains, exits 0).
ENTRYPOINT ["/usr/local/bin/pipeline"]
