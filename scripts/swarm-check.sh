#!/bin/sh
# CI check of the Docker Swarm deployment (docker-stack.yml), for real, on
# this machine's engine: `docker swarm init`, the stack with two replicas of
# every service, four live clients streaming held-out speech through the
# pipelines while asr_streaming is updated (`docker service update
# --force`: each replica drains in turn) and then while one of its tasks is
# killed; every client must finish, or get a clean close (1013) and finish
# after reconnecting.  Then the GPU file's placement (a task that needs a
# GPU waits for a node that advertises one), and everything is removed.
#
#   scripts/swarm-check.sh          (scripts/docker-check.sh runs it)
#
# Needs: dockerd running, the CPU images built (./build-docker.sh), and
# the test tool at_stream_clients (./scripts/build.sh builds it into
# build/; AT_BUILD_DIR names another build).  Swarm's virtual IPs and
# routing mesh need IPVS, which these virtual machines lack, so the stack
# runs here with AT_ENDPOINT_MODE=dnsrr and host-mode ports (0: a free port
# per task); a node already in a swarm is used as it is and not left.
set -u
cd "$(dirname "$0")/.." || exit 1

DOCKER=/usr/bin/docker
STACK=atswarm
BUILD_DIR=${AT_BUILD_DIR:-build}
CLIENTS="$BUILD_DIR/tests/deploy/at_stream_clients"
VERSION=$(sed -n 's/^project([a-z_]* VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
SERVICES="asr_streaming translate tts pipeline"
T0=$(date +%s)
elapsed() { echo $(($(date +%s) - T0)); }
step() { echo; echo "=== swarm [$(elapsed) s] $*"; }
FAILS=""
fail() { echo "FAIL: $*" >&2; FAILS="$FAILS
  - $*"; }
ok() { echo "ok: $*"; }
TMP=$(mktemp -d /tmp/at-swarm-check.XXXXXX)

# The stack as this machine can run it: two replicas of everything on one
# node with two CPUs (reservations lowered so that they fit), dnsrr, a free
# host port per task.
export AT_VERSION="$VERSION" AT_MODELS_VOLUME=atswarm-models
export AT_ENDPOINT_MODE=dnsrr AT_PUBLISH_MODE=host
export AT_PIPELINE_PORT=0 AT_ASR_PORT=0 AT_TRANSLATE_PORT=0 AT_TTS_PORT=0 AT_ASR_WYOMING_PORT=0 AT_TTS_WYOMING_PORT=0
export AT_ASR_CPUS_RESERVED=0.1 AT_TRANSLATE_CPUS_RESERVED=0.1 AT_TTS_CPUS_RESERVED=0.1 AT_PIPELINE_CPUS_RESERVED=0.1

INITED=0
cleanup() {
    for s in $STACK ${STACK}gpu ${STACK}vip; do "$DOCKER" stack rm "$s" >/dev/null 2>&1; done
    i=0
    while [ -n "$("$DOCKER" ps -aq --filter label=com.docker.stack.namespace=$STACK)" ] && [ $i -lt 60 ]; do
        sleep 1; i=$((i + 1))
    done
    "$DOCKER" volume rm "$AT_MODELS_VOLUME" >/dev/null 2>&1
    if [ "$INITED" = 1 ]; then "$DOCKER" swarm leave --force >/dev/null 2>&1 && echo "left the swarm"; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ncpu=$("$DOCKER" info --format '{{.NCPU}}')
[ "$ncpu" -lt 4 ] && export AT_ASR_CPUS="$ncpu"
[ "$ncpu" -lt 2 ] && export AT_TRANSLATE_CPUS="$ncpu" AT_TTS_CPUS="$ncpu" AT_PIPELINE_CPUS="$ncpu"

# Host ports of a service's tasks for one container port, comma-separated.
task_ports() { # SERVICE PORT
    for c in $("$DOCKER" ps -q --filter "label=com.docker.swarm.service.name=${STACK}_$1"); do
        "$DOCKER" port "$c" "$2/tcp" 2>/dev/null | head -n1 | sed 's/.*://'
    done | paste -sd, -
}
running() { "$DOCKER" service ls --filter "name=${STACK}_$1" --format '{{.Replicas}}' | head -n1; }
healthy() { "$DOCKER" ps -q --filter "label=com.docker.stack.namespace=$STACK" --filter health=healthy | wc -l; }

# --------------------------------------------------------------------------
step "swarm init"
[ -x "$CLIENTS" ] || { echo "FAIL: $CLIENTS is missing (./scripts/build.sh builds it)" >&2; exit 1; }
for s in $SERVICES; do
    "$DOCKER" image inspect "audio-translator/$s:$VERSION" >/dev/null 2>&1 ||
        { echo "FAIL: no image audio-translator/$s:$VERSION (./build-docker.sh)" >&2; exit 1; }
done
state=$("$DOCKER" info --format '{{.Swarm.LocalNodeState}}')
if [ "$state" = active ]; then
    echo "this engine is already a swarm node: using it, and leaving it in the swarm afterwards"
elif "$DOCKER" swarm init --advertise-addr 127.0.0.1 >"$TMP/init.log" 2>&1; then
    INITED=1
    ok "docker swarm init --advertise-addr 127.0.0.1"
else
    cat "$TMP/init.log" >&2
    echo "FAIL: docker swarm init failed" >&2
    exit 1
fi

# --------------------------------------------------------------------------
step "docker stack deploy -c docker-stack.yml $STACK (2 replicas each, dnsrr, host ports)"
if ! "$DOCKER" stack deploy -c docker-stack.yml "$STACK" >"$TMP/deploy.log" 2>&1; then
    cat "$TMP/deploy.log" >&2
    echo "FAIL: docker stack deploy failed" >&2
    exit 1
fi
grep -v -e '^Since --detach' -e '^In a future release' "$TMP/deploy.log"
t=$(date +%s)
until [ "$(healthy)" -ge 8 ]; do
    if [ $(($(date +%s) - t)) -gt 180 ]; then
        "$DOCKER" service ps --no-trunc "${STACK}_asr_streaming" "${STACK}_translate" "${STACK}_tts" "${STACK}_pipeline" >&2
        echo "FAIL: the stack's 8 tasks were not healthy within 180 s" >&2
        exit 1
    fi
    sleep 2
done
ok "8 tasks healthy $(($(date +%s) - t)) s after the deploy"
"$DOCKER" service ls --filter "label=com.docker.stack.namespace=$STACK" --format '{{.Name}} {{.Replicas}} {{.Image}}'

# --------------------------------------------------------------------------
step "the services as deployed: docker-compose.yml's limits, drain and update settings"
for spec in "asr_streaming $AT_ASR_CPUS 8589934592 4294967296" \
            "translate ${AT_TRANSLATE_CPUS:-2} 2147483648 1073741824" \
            "tts ${AT_TTS_CPUS:-2} 4294967296 2147483648" \
            "pipeline ${AT_PIPELINE_CPUS:-2} 1073741824 268435456"; do
    # shellcheck disable=SC2086
    set -- $spec
    got=$("$DOCKER" service inspect -f '{{.Spec.TaskTemplate.Resources.Limits.NanoCPUs}} {{.Spec.TaskTemplate.Resources.Limits.MemoryBytes}} {{.Spec.TaskTemplate.Resources.Reservations.MemoryBytes}} {{.Spec.TaskTemplate.ContainerSpec.StopGracePeriod}} {{.Spec.UpdateConfig.Parallelism}} {{.Spec.UpdateConfig.Order}} {{.Spec.UpdateConfig.FailureAction}} {{.Spec.TaskTemplate.RestartPolicy.Condition}} {{.Spec.EndpointSpec.Mode}} {{.Spec.Mode.Replicated.Replicas}}' "${STACK}_$1")
    want="$(($2 * 1000000000)) $3 $4 30s 1 start-first rollback any dnsrr 2"
    if [ "$got" = "$want" ]; then
        ok "$1: $2 CPUs, $(($3 / 1048576)) MiB limit, $(($4 / 1048576)) MiB reserved, 30 s grace, rolling start-first one at a time with rollback, 2 replicas"
    else
        fail "$1: deployed as '$got', expected '$want'"
    fi
done

# --------------------------------------------------------------------------
PIPES=$(task_ports pipeline 8000)
step "live streams spread over the asr_streaming replicas, through a rolling update of asr_streaming"
echo "pipeline replicas on host ports $PIPES; 4 clients, 30 s of speech each, in real time"
"$CLIENTS" --ports "$PIPES" --clients 4 --speed 1 >"$TMP/update.log" 2>&1 &
cpid=$!
sleep 8
spread=""
for p in $(task_ports asr_streaming 8003 | tr , ' '); do
    spread="$spread $(curl -s --max-time 5 "http://127.0.0.1:$p/metrics" | sed -n 's/^asr_streams_active \([0-9]*\).*/\1/p')"
done
echo "live streams per asr_streaming replica:$spread"
busy=0
for n in $spread; do [ "${n:-0}" -gt 0 ] && busy=$((busy + 1)); done
if [ "$busy" -ge 2 ]; then ok "the 4 sessions' streams are spread over both replicas ($spread )"; else fail "streams not spread over the asr_streaming replicas:$spread"; fi
t=$(date +%s)
if timeout 300 "$DOCKER" service update --force --detach=false "${STACK}_asr_streaming" >"$TMP/svc-update.log" 2>&1; then
    ok "docker service update --force ${STACK}_asr_streaming converged in $(($(date +%s) - t)) s"
else
    tail -5 "$TMP/svc-update.log" >&2
    fail "docker service update --force ${STACK}_asr_streaming did not converge"
fi
wait $cpid
rc=$?
cut -c1-300 "$TMP/update.log"
reconnects=$(sed -n 's/.* \([0-9]*\) closed 1013.*/\1/p' "$TMP/update.log" | awk '{ s += $1 } END { print s + 0 }')
if [ "$rc" = 0 ]; then
    ok "through the update, every client finished (${reconnects:-0} clean closes 1013, each followed by a successful reconnect)"
else
    fail "a client failed during the rolling update (above)"
fi

# --------------------------------------------------------------------------
step "one asr_streaming task killed in the middle of the streams"
"$CLIENTS" --ports "$PIPES" --clients 4 --speed 1 >"$TMP/kill.log" 2>&1 &
cpid=$!
sleep 8
victim=$("$DOCKER" ps -q --filter "label=com.docker.swarm.service.name=${STACK}_asr_streaming" | head -n1)
vport=$("$DOCKER" port "$victim" 8003/tcp | head -n1 | sed 's/.*://')
on_victim=$(curl -s --max-time 5 "http://127.0.0.1:$vport/metrics" | sed -n 's/^asr_streams_active \([0-9]*\).*/\1/p')
"$DOCKER" kill "$victim" >/dev/null && echo "killed $victim (SIGKILL), which had ${on_victim:-?} live streams"
wait $cpid
rc=$?
cut -c1-300 "$TMP/kill.log"
closed=$(grep -c ' [1-9][0-9]* closed 1013' "$TMP/kill.log")
if [ "$rc" = 0 ]; then ok "every client finished, those on the killed replica after a clean close and a reconnect"; else fail "a client failed when an asr_streaming task was killed (above)"; fi
if [ -n "$on_victim" ] && [ "$closed" -le "$on_victim" ]; then
    ok "the kill ended only the killed replica's sessions: $closed closed 1013, it had $on_victim streams"
else
    fail "$closed sessions closed 1013 after the kill of a replica that had ${on_victim:-?} streams"
fi
t=$(date +%s)
until [ "$(running asr_streaming)" = "2/2" ] && [ "$(healthy)" -ge 8 ]; do
    [ $(($(date +%s) - t)) -gt 120 ] && break
    sleep 2
done
if [ "$(running asr_streaming)" = "2/2" ]; then ok "Swarm replaced the killed task: asr_streaming 2/2 again"; else fail "asr_streaming is $(running asr_streaming) 120 s after the kill"; fi

# --------------------------------------------------------------------------
step "GPU placement: docker-stack.gpu.yml's asr_streaming waits for a node that advertises a GPU"
if "$DOCKER" node inspect self --format '{{json .Description.Resources.GenericResources}}' | grep -q NVIDIA-GPU; then
    echo "this node advertises NVIDIA-GPU: skipped"
else
    AT_TRANSLATE_REPLICAS=0 AT_TTS_REPLICAS=0 AT_PIPELINE_REPLICAS=0 AT_ASR_REPLICAS=1 \
        "$DOCKER" stack deploy -c docker-stack.yml -c docker-stack.gpu.yml "${STACK}gpu" >"$TMP/gpu.log" 2>&1 ||
        { cat "$TMP/gpu.log" >&2; fail "docker stack deploy with docker-stack.gpu.yml failed"; }
    err=""
    for _ in $(seq 1 20); do
        err=$("$DOCKER" service ps --no-trunc --format '{{.CurrentState}}: {{.Error}}' "${STACK}gpu_asr_streaming" 2>/dev/null | head -n1)
        case "$err" in *insufficient*) break ;; esac
        sleep 1
    done
    order=$("$DOCKER" service inspect -f '{{.Spec.UpdateConfig.Order}} {{json .Spec.TaskTemplate.Resources.Reservations.GenericResources}}' "${STACK}gpu_asr_streaming" 2>/dev/null)
    case "$err" in
    Pending*insufficient*) ok "asr_streaming (gpu) is not placed on a node without a GPU: $err" ;;
    *) fail "asr_streaming (gpu) on a node without a GPU: expected Pending, insufficient resources; got '$err'" ;;
    esac
    case "$order" in
    'stop-first '*'"Kind":"NVIDIA-GPU","Value":1'*) ok "it reserves one NVIDIA-GPU generic resource and updates stop-first" ;;
    *) fail "asr_streaming (gpu): update order and reservation are '$order'" ;;
    esac
    "$DOCKER" stack rm "${STACK}gpu" >/dev/null 2>&1
fi

# --------------------------------------------------------------------------
step "the default mode as written: virtual IPs and the routing mesh (no tasks: this VM has no IPVS)"
if env -u AT_ENDPOINT_MODE -u AT_PUBLISH_MODE -u AT_PIPELINE_PORT -u AT_ASR_PORT -u AT_TRANSLATE_PORT \
    -u AT_TTS_PORT -u AT_ASR_WYOMING_PORT -u AT_TTS_WYOMING_PORT AT_ASR_REPLICAS=0 AT_TRANSLATE_REPLICAS=0 \
    AT_TTS_REPLICAS=0 AT_PIPELINE_REPLICAS=0 "$DOCKER" stack deploy -c docker-stack.yml "${STACK}vip" >"$TMP/vip.log" 2>&1; then
    got=""
    for s in asr_streaming translate tts pipeline; do
        got="$got $s:$("$DOCKER" service inspect -f '{{.Spec.EndpointSpec.Mode}}{{range .Spec.EndpointSpec.Ports}},{{.PublishMode}}:{{.PublishedPort}}{{end}}' "${STACK}vip_$s")"
    done
    want=" asr_streaming:vip,ingress:8003,ingress:10300 translate:vip,ingress:8004 tts:vip,ingress:8005,ingress:10200 pipeline:vip,ingress:8000"
    if [ "$got" = "$want" ]; then ok "accepted:$got"; else fail "the default mode deployed as '$got', expected '$want'"; fi
else
    cat "$TMP/vip.log" >&2
    fail "docker stack deploy refused docker-stack.yml in its default mode"
fi
"$DOCKER" stack rm "${STACK}vip" >/dev/null 2>&1

# --------------------------------------------------------------------------
step "summary"
echo "whole swarm check: $(elapsed) s"
if [ -n "$FAILS" ]; then
    echo "swarm-check: FAILED:$FAILS" >&2
    exit 1
fi
echo "swarm-check: all checks passed"
