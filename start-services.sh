#!/bin/sh
# Starts the stack (docker-compose.yml), waits until every service is
# healthy and prints their URLs; fails, with the service's health log and
# last log lines, if one is not.
#
#   ./start-services.sh [--cpu | --gpu] [--timeout SECONDS]
#
# --gpu runs asr_streaming on an NVIDIA GPU (profile "gpu"), --cpu runs
# asr_streaming_cpu (profile "cpu").  Default: COMPOSE_PROFILES when set,
# else gpu when Docker has the NVIDIA runtime, else cpu.  The images must
# exist (./build-docker.sh; --gpu needs ./build-docker.sh --gpu).
# On hosts with fewer CPUs than a service's limit (4 for asr, 2 for the
# others), the limit is lowered to the host's count: Docker refuses a
# container whose limit exceeds the host.
set -eu
cd "$(dirname "$0")"

if [ -z "${DOCKER:-}" ]; then
    if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
if "$DOCKER" compose version >/dev/null 2>&1; then
    compose() { "$DOCKER" compose "$@"; }
elif command -v docker-compose >/dev/null 2>&1; then
    compose() { docker-compose "$@"; }
else
    echo "start-services.sh: neither 'docker compose' nor docker-compose is installed" >&2
    exit 1
fi

profile="${COMPOSE_PROFILES:-}"
timeout=180
while [ $# -gt 0 ]; do
    case "$1" in
    --cpu) profile=cpu ;;
    --gpu) profile=gpu ;;
    --timeout) timeout="$2"; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "start-services.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done

if ! "$DOCKER" info >/dev/null 2>&1; then
    echo "start-services.sh: cannot talk to the Docker daemon ($DOCKER info failed)" >&2
    exit 1
fi
if [ -z "$profile" ]; then
    if "$DOCKER" info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia; then
        profile=gpu
    else
        profile=cpu
    fi
    echo "Profile: $profile (chosen from this host; --cpu or --gpu to choose)"
fi
case "$profile" in
gpu) asr=asr_streaming pipeline=pipeline ;;
cpu) asr=asr_streaming_cpu pipeline=pipeline_cpu ;;
*) echo "start-services.sh: profile must be cpu or gpu, not '$profile'" >&2; exit 2 ;;
esac
export COMPOSE_PROFILES="$profile"
services="$asr translate tts $pipeline"

# CPU limits no higher than the host has.
ncpu=$("$DOCKER" info --format '{{.NCPU}}' 2>/dev/null || nproc)
clamp() { # VAR DEFAULT
    eval "cur=\${$1:-}"
    if [ -z "$cur" ] && [ "$ncpu" -lt "$2" ]; then
        export "$1=$ncpu"
        echo "Note: this host has $ncpu CPUs; $1=$ncpu instead of $2"
    fi
}
clamp AT_ASR_CPUS 4
clamp AT_TRANSLATE_CPUS 2
clamp AT_TTS_CPUS 2
clamp AT_PIPELINE_CPUS 2

# Every image present?  (--no-build below: nothing is built behind your back.)
images=$(compose config | awk -v want=" $services " '
    /^services:/ { in_svc = 1; next }
    /^[^ ]/ { in_svc = 0 }
    in_svc && /^  [A-Za-z0-9_.-]+:$/ { name = $1; sub(/:$/, "", name) }
    in_svc && /^    image:/ && index(want, " " name " ") { print $2 }')
missing=""
for img in $images; do
    "$DOCKER" image inspect "$img" >/dev/null 2>&1 || missing="$missing $img"
done
if [ -n "$missing" ]; then
    echo "start-services.sh: missing images:$missing" >&2
    if [ "$profile" = gpu ]; then
        echo "Build them with ./build-docker.sh --gpu (or start with --cpu)." >&2
    else
        echo "Build them with ./build-docker.sh" >&2
    fi
    exit 1
fi

echo "Starting ($profile):$services"
# shellcheck disable=SC2086
if ! compose up -d --no-build $services; then
    echo >&2
    echo "start-services.sh: 'compose up' failed (what did start is left running;" >&2
    echo "COMPOSE_PROFILES=$profile docker compose down stops it)." >&2
    if [ "$profile" = gpu ]; then
        echo "For 'could not select device driver \"nvidia\"': the NVIDIA Container Toolkit is" >&2
        echo "missing; run ./setup-gpu.sh, or start without a GPU: ./start-services.sh --cpu" >&2
    fi
    exit 1
fi

# Container of each service, looked up once.
ids=""
for s in $services; do
    ids="$ids $s=$(compose ps -q "$s" 2>/dev/null | head -n1)"
done
id_of() { for p in $ids; do if [ "${p%%=*}" = "$1" ]; then echo "${p#*=}"; fi; done; }

status_of() { # SERVICE -> starting | healthy | unhealthy | exited | missing
    id=$(id_of "$1")
    [ -n "$id" ] || { echo missing; return; }
    st=$("$DOCKER" inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id" 2>/dev/null) ||
        { echo missing; return; }
    case "$st" in
    running\ healthy) echo healthy ;;
    running\ unhealthy) echo unhealthy ;;
    running*) echo starting ;;
    *) echo exited ;;
    esac
}
explain() { # SERVICE
    id=$(id_of "$1")
    echo "---- $1: $("$DOCKER" inspect -f '{{.State.Status}} exit={{.State.ExitCode}} {{.State.Error}}' "$id" 2>/dev/null || echo 'no container')" >&2
    "$DOCKER" inspect -f '{{if .State.Health}}{{range .State.Health.Log}}health check exit {{.ExitCode}}: {{.Output}}{{"\n"}}{{end}}{{end}}' "$id" 2>/dev/null | tail -n 3 >&2 || true
    compose logs --tail 20 "$1" >&2 || true
}

start=$(date +%s)
while :; do
    pending=""
    failed=""
    for s in $services; do
        case "$(status_of "$s")" in
        healthy) ;;
        starting) pending="$pending $s" ;;
        *) failed="$failed $s" ;;
        esac
    done
    [ -z "$pending" ] && [ -z "$failed" ] && break
    if [ -n "$failed" ] || [ $(( $(date +%s) - start )) -ge "$timeout" ]; then
        for s in $failed $pending; do explain "$s"; done
        if [ -n "$failed" ]; then
            echo "start-services.sh: not healthy:$failed$pending" >&2
        else
            echo "start-services.sh: still not healthy after ${timeout}s:$pending" >&2
        fi
        exit 1
    fi
    sleep 2
done

echo "All services healthy after $(( $(date +%s) - start )) s:"
echo "  asr_streaming  http://localhost:8003   (POST /v1/audio/transcriptions, ws://localhost:8003/v1/stream)"
echo "  translate      http://localhost:8004   (POST /translate, GET /languages)"
echo "  tts            http://localhost:8005   (POST /v1/audio/speech, GET /v1/voices)"
echo "  pipeline       http://localhost:8000/  (the web page; ws://localhost:8000/v1/pipeline)"
echo "Health: curl localhost:8003/health   Stop: COMPOSE_PROFILES=$profile docker compose down"
