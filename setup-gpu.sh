#!/bin/sh
# Checks that Docker can give containers an NVIDIA GPU: runs nvidia-smi in a
# container with --gpus all.  When that fails, says what is missing and how
# to install it, and exits 1.
#
#   ./setup-gpu.sh [IMAGE]
#
# IMAGE: the container to run nvidia-smi in (the NVIDIA runtime mounts
# nvidia-smi and the driver libraries into any image).  Default: the GPU
# ASR image if built, else the CUDA runtime base, else debian:bookworm-slim.
set -u
cd "$(dirname "$0")" || exit 1

if [ -z "${DOCKER:-}" ]; then
    if [ -x /usr/bin/docker ]; then DOCKER=/usr/bin/docker; else DOCKER=docker; fi
fi
VERSION="${AT_VERSION:-$(sed -n 's/^project([a-z_]* VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)}"
CUDA_VERSION="${CUDA_VERSION:-12.6.3}"

install_help() {
    cat >&2 <<'EOF'

How to give Docker the GPU (Debian/Ubuntu host, as root):

 1. The NVIDIA driver on the host: `nvidia-smi` must work there.
    Debian: apt-get install nvidia-driver firmware-misc-nonfree (contrib,
    non-free and non-free-firmware enabled), then reboot.
    Ubuntu: ubuntu-drivers install, then reboot.

 2. The NVIDIA Container Toolkit:
      curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey |
        gpg --dearmor -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
      curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list |
        sed 's#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#' \
        > /etc/apt/sources.list.d/nvidia-container-toolkit.list
      apt-get update && apt-get install -y nvidia-container-toolkit

 3. Tell Docker about it and restart Docker:
      nvidia-ctk runtime configure --runtime=docker
      systemctl restart docker

 4. Run this script again.

Without a GPU, run the CPU stack instead: ./start-services.sh --cpu
(See docs/docker.md, "No GPU".)
EOF
}

if ! "$DOCKER" info >/dev/null 2>&1; then
    echo "setup-gpu.sh: cannot talk to the Docker daemon ($DOCKER info failed)" >&2
    exit 1
fi

ok=1
if command -v nvidia-smi >/dev/null 2>&1; then
    if nvidia-smi -L >/dev/null 2>&1; then
        echo "host: NVIDIA driver present:"
        nvidia-smi -L | sed 's/^/  /'
    else
        echo "host: nvidia-smi is installed but fails: the driver is not loaded" >&2
        ok=0
    fi
else
    echo "host: no nvidia-smi: no NVIDIA driver on this machine" >&2
    ok=0
fi

runtimes=$("$DOCKER" info --format '{{json .Runtimes}}' 2>/dev/null || echo '{}')
if printf '%s' "$runtimes" | grep -q nvidia; then
    echo "docker: the nvidia runtime is registered"
else
    echo "docker: no nvidia runtime registered (the NVIDIA Container Toolkit is missing or not configured)" >&2
fi

image="${1:-}"
if [ -z "$image" ]; then
    for i in "audio-translator/asr_streaming:$VERSION-gpu" \
             "nvidia/cuda:$CUDA_VERSION-runtime-ubuntu24.04" debian:bookworm-slim; do
        if "$DOCKER" image inspect "$i" >/dev/null 2>&1; then image="$i"; break; fi
    done
    [ -n "$image" ] || image="nvidia/cuda:$CUDA_VERSION-base-ubuntu24.04"
fi

echo "docker: docker run --rm --gpus all --entrypoint nvidia-smi $image"
if out=$("$DOCKER" run --rm --gpus all --entrypoint nvidia-smi "$image" 2>&1); then
    printf '%s\n' "$out" | sed 's/^/  /'
    echo "OK: containers can use the GPU.  Start the stack with ./start-services.sh --gpu"
    exit 0
fi
printf '%s\n' "$out" | sed 's/^/  /' >&2
case "$out" in
*"could not select device driver"*)
    echo "FAIL: Docker has no GPU device driver: the NVIDIA Container Toolkit is not installed or not configured." >&2 ;;
*"executable file not found"*|*"no such file"*)
    echo "FAIL: the runtime did not mount nvidia-smi into the container: check the toolkit's configuration." >&2 ;;
*)
    echo "FAIL: a container with --gpus all could not run nvidia-smi." >&2 ;;
esac
[ "$ok" = 1 ] || echo "(and the host itself has no working NVIDIA driver)" >&2
install_help
exit 1
