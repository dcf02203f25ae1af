#!/bin/sh
# CI check of the container deployment (docker/, docker-compose.yml, the
# root scripts), for real, from a machine with nothing running and no
# registry: installs docker.io, docker-compose and debootstrap if missing,
# starts dockerd if it is not running, makes debian:bookworm-slim with
# debootstrap, builds every image (asr_streaming, translate, tts, pipeline),
# checks sizes against the budgets, the one-file rebuild, the GPU variant's
# Dockerfile path (on an Ubuntu 24.04 stand-in for the CUDA images), starts
# the CPU stack, checks health, one real request per service (a
# transcription, a translation, a synthesis, the pipeline's /v1/config
# gathered from the other three), users, compilers, limits, the GPU
# service's failure without a GPU, the SIGTERM shutdown, and the same
# images as a Docker Swarm stack (scripts/swarm-check.sh).
#
#   scripts/docker-check.sh
#
# Runs every check even after a failure, prints a summary, exits 1 if any
# failed.  Needs root (apt-get, dockerd) unless Docker is already usable.
# Environment:
#   AT_CHECK_GPU_BUILD=0     skip building the GPU variant on the stand-in
#   AT_CHECK_SWARM=0         skip the Docker Swarm check
#   AT_KEEP_DOCKERD=1        leave a dockerd this script started running
#   AT_DEBOOTSTRAP_CACHE     where base root file systems are cached
#                            (default /var/cache/at-debootstrap)
# Budgets: each CPU image adds at most 100 MB to its base, the GPU image at
# most 150 MB (MB = 10^6 bytes, as docker prints them); the one-file
# rebuild takes under 60 s and changes only that service's image.
set -u
cd "$(dirname "$0")/.." || exit 1

T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
step() { echo; echo "=== [$(elapsed) s] $*"; }
FAILS=""
fail() { echo "FAIL: $*" >&2; FAILS="$FAILS
  - $*"; }
ok() { echo "ok: $*"; }
TMP=$(mktemp -d /tmp/at-docker-check.XXXXXX)

# Distribution client (a newer static client may insist on buildx).
DOCKER=/usr/bin/docker
export DOCKER DOCKER_BUILDKIT=1
# A project and a volume of its own, so a stack of yours on this machine is
# left alone (its ports excepted: 8000-8005, 10200 and 10300 must be free).
export COMPOSE_PROJECT_NAME=atcheck AT_MODELS_VOLUME=atcheck-models
VERSION=$(sed -n 's/^project([a-z_]* VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
export AT_VERSION="$VERSION"
SERVICES="asr_streaming translate tts pipeline"
CPU_BUDGET_MB=100
GPU_BUDGET_MB=150
REBUILD_BUDGET_S=60
CLIP=/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav
STUB_BASE=at-local/ubuntu:24.04
# The GPU variant built on the stand-in gets a tag of its own, so a real
# GPU image on this machine is left alone.
STANDIN_VERSION="$VERSION-standin"
GPU_IMAGE="audio-translator/asr_streaming:$STANDIN_VERSION-gpu"

STARTED_DOCKERD=""
cleanup() {
    if [ -x "$DOCKER" ] && "$DOCKER" info >/dev/null 2>&1; then
        for p in cpu gpu; do
            COMPOSE_PROFILES=$p docker-compose down --volumes --timeout 30 >/dev/null 2>&1 || true
        done
        for s in $SERVICES; do "$DOCKER" rmi "audio-translator/$s:probe" >/dev/null 2>&1 || true; done
        "$DOCKER" rmi "$GPU_IMAGE" "audio-translator/asr_streaming:gpucheck-gpu" >/dev/null 2>&1 || true
        # Earlier builds of these images, left untagged by this one.
        "$DOCKER" image prune -f \
            --filter "label=org.opencontainers.image.source=https://github.com/audio-translator/audio-translator" \
            >/dev/null 2>&1 || true
    fi
    if [ -n "$STARTED_DOCKERD" ] && [ "${AT_KEEP_DOCKERD:-0}" != 1 ]; then
        echo "stopping the dockerd this check started (pid $STARTED_DOCKERD)"
        kill "$STARTED_DOCKERD" 2>/dev/null || true
        i=0
        while kill -0 "$STARTED_DOCKERD" 2>/dev/null && [ $i -lt 30 ]; do sleep 1; i=$((i + 1)); done
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1000000 }'; }
size_of() { "$DOCKER" image inspect -f '{{.Size}}' "$1" 2>/dev/null; }

# --------------------------------------------------------------------------
step "tools"
need=""
for p in docker.io docker-compose debootstrap curl pocketsphinx-testdata; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
    echo "installing:$need"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    { apt-get update -q && apt-get install -y -q --no-install-recommends $need; } >"$TMP/apt.log" 2>&1 ||
        { tail -20 "$TMP/apt.log" >&2; echo "FAIL: could not install$need" >&2; exit 1; }
fi
"$DOCKER" --version
docker-compose --version

# --------------------------------------------------------------------------
step "dockerd"
if "$DOCKER" info >/dev/null 2>&1; then
    echo "dockerd already running"
else
    echo "starting dockerd (log: /var/log/at-dockerd.log)"
    dockerd >/var/log/at-dockerd.log 2>&1 &
    STARTED_DOCKERD=$!
    i=0
    until "$DOCKER" info >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 60 ] || ! kill -0 "$STARTED_DOCKERD" 2>/dev/null; then
            tail -20 /var/log/at-dockerd.log >&2
            echo "FAIL: dockerd did not start" >&2
            exit 1
        fi
        sleep 1
    done
    echo "dockerd up after $i s"
fi
"$DOCKER" info --format 'docker {{.ServerVersion}}, {{.NCPU}} CPUs, storage {{.Driver}}, runtimes {{json .Runtimes}}'
# Docker refuses a CPU limit above the host's count: cap the compose limits.
NCPU=$("$DOCKER" info --format '{{.NCPU}}')
[ "$NCPU" -lt 4 ] && export AT_ASR_CPUS="$NCPU"
[ "$NCPU" -lt 2 ] && export AT_TRANSLATE_CPUS="$NCPU" AT_TTS_CPUS="$NCPU" AT_PIPELINE_CPUS="$NCPU"

# --------------------------------------------------------------------------
step "base image (debootstrap, cached in ${AT_DEBOOTSTRAP_CACHE:-/var/cache/at-debootstrap})"
docker/make-base.sh debian:bookworm-slim bookworm || { echo "FAIL: no base image" >&2; exit 1; }

# --------------------------------------------------------------------------
step "build the CPU images"
t=$(date +%s)
if AT_BUILD_PROGRESS=plain ./build-docker.sh >"$TMP/build.log" 2>&1; then
    BUILD_S=$(( $(date +%s) - t ))
    grep -E '^==>|built in|runtime packages:' "$TMP/build.log"
    ok "built the four images in $BUILD_S s"
else
    tail -60 "$TMP/build.log" >&2
    echo "FAIL: ./build-docker.sh failed (above: the end of its log)" >&2
    exit 1
fi
IDS=""
for s in $SERVICES; do
    IDS="$IDS $s=$("$DOCKER" image inspect -f '{{.Id}}' "audio-translator/$s:$VERSION")"
done
id_of() { for p in $IDS; do if [ "${p%%=*}" = "$1" ]; then echo "${p#*=}"; fi; done; }

# --------------------------------------------------------------------------
step "image sizes against the budgets"
BUDGETS=""
budget() { # IMAGE BASE LIMIT_MB
    size=$(size_of "$1"); bsize=$(size_of "$2")
    adds=$((size - bsize))
    if [ "$adds" -le $(($3 * 1000000)) ]; then verdict=ok; else verdict=OVER; fi
    line=$(printf '%-48s %8s MB  base %-24s %8s MB  adds %7s MB  budget %4s MB  %s' \
        "$1" "$(mb "$size")" "$2" "$(mb "$bsize")" "$(mb "$adds")" "$3" "$verdict")
    BUDGETS="$BUDGETS
$line"
    echo "$line"
    if [ "$verdict" = OVER ]; then
        fail "$1 adds $(mb "$adds") MB to $2, over its $3 MB budget"
        # What the image added, biggest first.
        "$DOCKER" run --rm --entrypoint sh "$2" -c "dpkg-query -W -f='\${Package}\n'" >"$TMP/base.pk" 2>/dev/null
        "$DOCKER" run --rm --entrypoint sh "$1" -c "dpkg-query -W -f='\${Installed-Size} \${Package}\n'" 2>/dev/null |
            awk 'NR == FNR { b[$1] = 1; next } !($2 in b)' "$TMP/base.pk" - | sort -rn | head -8 |
            awk '{ printf "      %-28s %6.1f MB (dpkg Installed-Size, before excludes)\n", $2, $1 * 1024 / 1000000 }'
    fi
}
for s in $SERVICES; do budget "audio-translator/$s:$VERSION" debian:bookworm-slim $CPU_BUDGET_MB; done

# --------------------------------------------------------------------------
step "runtime images: no compiler, user appuser (uid 1000)"
for s in $SERVICES; do
    img="audio-translator/$s:$VERSION"
    found=$("$DOCKER" run --rm --entrypoint sh "$img" -c 'which gcc cc g++ c++ make' 2>&1)
    if [ -z "$found" ]; then ok "$s: which gcc cc g++ c++ make finds nothing"; else fail "$s image has build tools: $found"; fi
    user=$("$DOCKER" run --rm --entrypoint id "$img" 2>&1)
    case "$user" in
    "uid=1000(appuser) gid=1000(appuser)"*) ok "$s image runs as $user" ;;
    *) fail "$s image runs as '$user', not uid=1000(appuser)" ;;
    esac
    hc=$("$DOCKER" image inspect -f '{{if .Config.Healthcheck}}{{join .Config.Healthcheck.Test " "}}{{end}}' "$img")
    case "$hc" in *"/health"*) ok "$s image has a HEALTHCHECK on /health" ;; *) fail "$s image has no HEALTHCHECK on /health" ;; esac
done

# --------------------------------------------------------------------------
step "the model cache tool in the pipeline image (what the Kubernetes models-pull Job runs)"
img="audio-translator/pipeline:$VERSION"
out=$("$DOCKER" run --rm -e AT_MODELS_DIR=/tmp/models --entrypoint audio-translator "$img" models list 2>&1)
case "$out" in
*'tiny '*pullable*) ok "audio-translator models list: $(printf '%s\n' "$out" | grep -c pullable) pullable models" ;;
*) fail "audio-translator models list in the pipeline image: $out" ;;
esac
# No registry nor model hub here: a download that cannot connect must say so.
out=$("$DOCKER" run --rm -e AT_MODELS_DIR=/tmp/models -e AT_MODELS_URL=http://127.0.0.1:9 \
    --entrypoint audio-translator "$img" models pull --quiet tiny 2>&1)
rc=$?
case "$rc $out" in
"1 "*"Couldn't connect"*) ok "audio-translator models pull without a network: exit 1, $out" ;;
*) fail "audio-translator models pull without a network: exit $rc, $out" ;;
esac
if "$DOCKER" run --rm --entrypoint test "$img" -s /etc/ssl/certs/ca-certificates.crt; then
    ok "the pipeline image has the CA certificates HTTPS downloads need"
else
    fail "the pipeline image has no /etc/ssl/certs/ca-certificates.crt"
fi

# --------------------------------------------------------------------------
step "rebuild after a one-file change (src/services/main_tts.c, in a copy of the tree)"
probe="$TMP/probe"
mkdir -p "$probe"
tree="CMakeLists.txt src docker .dockerignore"
for d in cmake web; do [ -d "$d" ] && tree="$tree $d"; done
# shellcheck disable=SC2086
tar -cf - $tree | tar -xf - -C "$probe"
# A new change every run (a string the binary keeps), so the time measured
# is a real recompile, not a cache hit from the previous run.
printf '\n/* docker-check rebuild probe */\nstatic const char at_rebuild_probe[] __attribute__((used)) = "%s";\n' \
    "$(date +%s.%N)" >>"$probe/src/services/main_tts.c"
t=$(date +%s)
probe_ok=1
for s in $SERVICES; do
    "$DOCKER" build -q --build-arg AT_VERSION="$VERSION" -f "$probe/docker/$s.Dockerfile" \
        -t "audio-translator/$s:probe" "$probe" >"$TMP/probe-$s.log" 2>&1 ||
        { tail -20 "$TMP/probe-$s.log" >&2; probe_ok=0; }
done
REBUILD_S=$(( $(date +%s) - t ))
if [ "$probe_ok" = 1 ]; then
    changed=""
    for s in $SERVICES; do
        new=$("$DOCKER" image inspect -f '{{.Id}}' "audio-translator/$s:probe")
        [ "$new" = "$(id_of "$s")" ] || changed="$changed $s"
    done
    echo "rebuilt all four in $REBUILD_S s; images that changed:${changed:- none}"
    if [ "$REBUILD_S" -lt "$REBUILD_BUDGET_S" ]; then ok "one-file rebuild in $REBUILD_S s (< $REBUILD_BUDGET_S s)"; else fail "one-file rebuild took $REBUILD_S s (budget $REBUILD_BUDGET_S s)"; fi
    if [ "$changed" = " tts" ]; then ok "only the tts image changed"; else fail "a change to main_tts.c changed:${changed:- nothing} (expected tts only)"; fi
else
    fail "the rebuild probe did not build"
fi
for s in $SERVICES; do "$DOCKER" rmi "audio-translator/$s:probe" >/dev/null 2>&1 || true; done

# --------------------------------------------------------------------------
GPU_BUILT=0
if [ "${AT_CHECK_GPU_BUILD:-1}" = 1 ]; then
    step "GPU variant: its Dockerfile path on an Ubuntu 24.04 stand-in for the CUDA images"
    echo "(no registry: nvidia/cuda cannot be pulled; the stand-in has Ubuntu 24.04, the CUDA"
    echo " images' OS, without CUDA, so this checks the packages, the build with -DAT_CUDA=ON"
    echo " and the runtime stage, not CUDA itself)"
    mirror="${AT_UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}"
    if ! "$DOCKER" image inspect "$STUB_BASE" >/dev/null 2>&1 &&
        ! curl -sfI --max-time 15 "$mirror/dists/noble/Release" >/dev/null; then
        # The stand-in needs Ubuntu's archive; a network without it cannot
        # build the GPU variant at all, which is not a defect of the images.
        echo "skipped: $mirror is unreachable from here (the GPU service is still checked below)"
    elif docker/make-base.sh "$STUB_BASE" noble; then
        t=$(date +%s)
        if CUDA_DEVEL_IMAGE="$STUB_BASE" CUDA_RUNTIME_IMAGE="$STUB_BASE" AT_BUILD_PROGRESS=plain \
            AT_VERSION="$STANDIN_VERSION" ./build-docker.sh --gpu-only >"$TMP/build-gpu.log" 2>&1; then
            grep -E '^==>|built in|runtime packages:' "$TMP/build-gpu.log"
            ok "GPU variant built in $(( $(date +%s) - t )) s"
            GPU_BUILT=1
            budget "$GPU_IMAGE" "$STUB_BASE" $GPU_BUDGET_MB
        else
            tail -40 "$TMP/build-gpu.log" >&2
            fail "the GPU variant did not build on the Ubuntu 24.04 stand-in"
        fi
    else
        fail "could not make the Ubuntu 24.04 stand-in base"
    fi
fi

# --------------------------------------------------------------------------
step "compose file"
for p in cpu gpu; do
    if COMPOSE_PROFILES=$p docker-compose config -q; then ok "docker-compose config -q (profile $p)"; else fail "docker-compose config -q fails for profile $p"; fi
done
COMPOSE_PROFILES=gpu docker-compose config >"$TMP/gpu-config.yml" 2>/dev/null
awk '/^  asr_streaming:$/ { on = 1; next } /^  [^ ]/ { on = 0 } on' "$TMP/gpu-config.yml" >"$TMP/gpu-svc.yml"
if grep -q 'count: 1' "$TMP/gpu-svc.yml" && grep -q -- '- gpu' "$TMP/gpu-svc.yml" &&
    grep -q "CUDA_VISIBLE_DEVICES: '0'" "$TMP/gpu-svc.yml" && grep -q 'driver: nvidia' "$TMP/gpu-svc.yml"; then
    ok "asr_streaming reserves one NVIDIA GPU (count 1, capabilities gpu) and sets CUDA_VISIBLE_DEVICES=0"
else
    fail "asr_streaming's GPU reservation is not as expected:"; cat "$TMP/gpu-svc.yml" >&2
fi

# --------------------------------------------------------------------------
step "start the CPU stack"
busy=""
for port in 8000 8003 8004 8005; do
    curl -s -o /dev/null --max-time 2 "http://localhost:$port/" && busy="$busy $port"
done
if [ -n "$busy" ]; then
    fail "ports in use:$busy (stop what listens there and run again)"
    STACK=0
else
    t=$(date +%s)
    if ./start-services.sh --cpu --timeout 150; then
        ok "every service healthy $(( $(date +%s) - t )) s after start"
        STACK=1
    else
        fail "the CPU stack did not become healthy"
        STACK=0
    fi
fi

if [ "$STACK" = 1 ]; then
    export COMPOSE_PROFILES=cpu
    step "health, readiness and one real request per service"
    for port in 8003 8004 8005 8000; do
        h=$(curl -sS --max-time 5 "http://localhost:$port/health" 2>&1)
        case "$h" in *'"ok"'*) ok "GET :$port/health -> $h" ;; *) fail "GET :$port/health -> $h" ;; esac
        i=0
        until curl -fsS --max-time 5 -o /dev/null "http://localhost:$port/ready" 2>/dev/null; do
            i=$((i + 1)); [ $i -ge 60 ] && break; sleep 1
        done
        [ $i -ge 60 ] && fail ":$port/ready never answered 200"
    done

    r=$(curl -sS --max-time 120 -F "file=@$CLIP" http://localhost:8003/v1/audio/transcriptions 2>&1)
    case "$r" in
    *'"text":"'[a-zA-Z]*) ok "transcription: $r" ;;
    *) fail "transcription of $(basename "$CLIP"): $r" ;;
    esac

    r=$(curl -sS --max-time 60 -H 'Content-Type: application/json' \
        -d '{"q":"The weather is nice today.","source":"en","target":"es"}' http://localhost:8004/translate 2>&1)
    case "$r" in
    *'"translatedText":"'[A-Za-z]*) ok "translation en->es: $r" ;;
    *) fail "translation en->es: $r" ;;
    esac

    code=$(curl -sS --max-time 60 -o "$TMP/speech.wav" -w '%{http_code}' -H 'Content-Type: application/json' \
        -d '{"input":"Hello from the container.","voice":"slt","response_format":"wav"}' http://localhost:8005/v1/audio/speech 2>&1)
    bytes=$(wc -c <"$TMP/speech.wav" 2>/dev/null || echo 0)
    if [ "$code" = 200 ] && [ "$bytes" -gt 1000 ] && [ "$(head -c 4 "$TMP/speech.wav")" = RIFF ]; then
        ok "synthesis: HTTP 200, a $bytes-byte WAV"
    else
        fail "synthesis: HTTP $code, $bytes bytes"
    fi

    # Home Assistant's first question over Wyoming: describe -> info
    r=$(timeout 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/10200 && printf "{\"type\": \"describe\"}\n" >&3 && head -c 300 <&3' 2>&1)
    case "$r" in
    *'"type":"info"'*) ok "Wyoming describe on :10200 -> info" ;;
    *) fail "Wyoming describe on :10200 -> $r" ;;
    esac

    r=$(curl -sS --max-time 30 http://localhost:8000/v1/config 2>&1)
    case "$r" in
    *'"es"'*) ok "pipeline GET /v1/config (gathered from the three services): $(printf '%s' "$r" | cut -c1-160)..." ;;
    *) fail "pipeline GET /v1/config: $r" ;;
    esac

    step "inside the containers"
    for s in asr_streaming_cpu translate tts pipeline_cpu; do
        u=$(docker-compose exec -T "$s" id 2>"$TMP/exec.err" | tr -d '\r')
        [ -n "$u" ] || u=$(grep -v 'deploy sub-keys' "$TMP/exec.err")
        case "$u" in
        "uid=1000(appuser) gid=1000(appuser)"*) ok "docker-compose exec $s id: $u" ;;
        *) fail "docker-compose exec $s id: $u" ;;
        esac
    done
    if docker-compose exec -T asr_streaming_cpu sh -c 'touch /models/.w && rm /models/.w' 2>"$TMP/exec.err"; then
        ok "the models volume is writable by appuser"
    else
        fail "appuser cannot write to /models: $(grep -v 'deploy sub-keys' "$TMP/exec.err")"
    fi

    step "resource limits, restart policy"
    ncpu=$NCPU
    min() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }
    for spec in "asr_streaming_cpu $(min 4 "$ncpu") 8589934592 4294967296" \
                "translate $(min 2 "$ncpu") 2147483648 1073741824" \
                "tts $(min 2 "$ncpu") 4294967296 2147483648" \
                "pipeline_cpu $(min 2 "$ncpu") 1073741824 268435456"; do
        # shellcheck disable=SC2086
        set -- $spec
        id=$(docker-compose ps -q "$1" | head -n1)
        got=$("$DOCKER" inspect -f '{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.MemoryReservation}} {{.HostConfig.RestartPolicy.Name}}' "$id")
        want="$(($2 * 1000000000)) $3 $4 unless-stopped"
        if [ "$got" = "$want" ]; then
            ok "$1: $2 CPUs, memory limit $(($3 / 1048576)) MiB, reservation $(($4 / 1048576)) MiB, restart unless-stopped"
        else
            fail "$1: limits '$got', expected '$want' (nano-CPUs, memory, reservation, restart)"
        fi
    done
    "$DOCKER" stats --no-stream --format 'table {{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}'

    step "SIGTERM: stop the stack"
    t=$(date +%s)
    docker-compose stop --timeout 30 2>&1 | grep -v 'deploy sub-keys'
    STOP_S=$(( $(date +%s) - t ))
    for s in asr_streaming_cpu translate tts pipeline_cpu; do
        id=$(docker-compose ps -q "$s" | head -n1)
        code=$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$id")
        if [ "$code" = 0 ]; then ok "$s exited 0 on SIGTERM"; else fail "$s exited $code on SIGTERM"; docker-compose logs --tail 10 "$s" >&2; fi
    done
    if [ "$STOP_S" -lt 15 ]; then ok "stop took $STOP_S s (grace period 30 s: nobody was killed)"; else fail "stop took $STOP_S s: a service ignored SIGTERM"; fi
    t=$(date +%s)
    docker-compose down --volumes 2>&1 | grep -v 'deploy sub-keys'
    echo "down took $(( $(date +%s) - t )) s"
fi

# --------------------------------------------------------------------------
if [ "${AT_CHECK_SWARM:-1}" = 1 ]; then
    step "Docker Swarm: docker-stack.yml, replicas, a rolling update and a killed task under live streams"
    if ./scripts/swarm-check.sh; then ok "the Docker Swarm check passed"; else fail "the Docker Swarm check failed (above)"; fi
fi

# --------------------------------------------------------------------------
step "GPU service without a GPU: must fail, not run on the CPU"
if "$DOCKER" info --format '{{json .Runtimes}}' | grep -q nvidia; then
    echo "this host has the NVIDIA runtime: skipping the missing-driver check"
else
    gimg="$GPU_IMAGE"
    export AT_VERSION="$STANDIN_VERSION"
    if [ "$GPU_BUILT" != 1 ]; then
        # Without the GPU variant, the CPU image stands in: the device
        # request fails before anything in the image runs.
        gimg="audio-translator/asr_streaming:gpucheck-gpu"
        "$DOCKER" tag "audio-translator/asr_streaming:$VERSION" "$gimg"
        export AT_VERSION=gpucheck
    fi
    # Only asr_streaming: --no-deps is implied, nothing else is started.
    out=$(COMPOSE_PROFILES=gpu docker-compose up -d --no-build asr_streaming 2>&1)
    rc=$?
    echo "$out" | grep -v 'deploy sub-keys'
    running=$(COMPOSE_PROFILES=gpu docker-compose ps -q asr_streaming 2>/dev/null | head -n1)
    state=""
    [ -n "$running" ] && state=$("$DOCKER" inspect -f '{{.State.Status}}' "$running" 2>/dev/null)
    case "$out" in
    *'could not select device driver "nvidia" with capabilities: [[gpu]]'*)
        if [ "$rc" != 0 ] && [ "$state" != running ]; then
            ok "asr_streaming (gpu) refused to start: could not select device driver \"nvidia\""
        else
            fail "asr_streaming (gpu) reported the missing driver but is $state (rc $rc)"
        fi ;;
    *) fail "asr_streaming (gpu) without a GPU: expected 'could not select device driver', got rc $rc, state '$state'" ;;
    esac
    COMPOSE_PROFILES=gpu docker-compose down --volumes >/dev/null 2>&1
    if [ "$GPU_BUILT" != 1 ]; then "$DOCKER" rmi "$gimg" >/dev/null 2>&1; fi
    export AT_VERSION="$VERSION"
fi

# --------------------------------------------------------------------------
step "summary"
echo "image sizes (MB = 10^6 bytes):$BUDGETS"
echo "build of the four images: ${BUILD_S:-?} s; one-file rebuild: $REBUILD_S s; stop: ${STOP_S:-?} s"
echo "whole check: $(elapsed) s"
if [ -n "$FAILS" ]; then
    echo "docker-check: FAILED:$FAILS" >&2
    exit 1
fi
echo "docker-check: all checks passed"
