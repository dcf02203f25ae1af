#!/bin/sh
# Makes a base image with debootstrap and imports it into Docker, for hosts
# that cannot reach a registry (CI, air-gapped machines).
#
#   docker/make-base.sh [TAG [SUITE]]
#
#   TAG    default debian:bookworm-slim
#   SUITE  bookworm (default): a Debian 12 minbase trimmed like the official
#          slim image (no docs, man pages or translations; empty apt lists).
#          noble: an Ubuntu 24.04 minbase, the stand-in docker-check uses for
#          the CUDA images (nvidia/cuda:*-ubuntu24.04) to build the GPU
#          variant's Dockerfile path without a registry.
#
# The root file system is kept as a tarball in $AT_DEBOOTSTRAP_CACHE
# (default /var/cache/at-debootstrap), so later calls, in the same run or
# the next, only import it.  Does nothing when TAG already exists.  Needs
# root, debootstrap and the mirror: AT_DEBIAN_MIRROR (default
# http://deb.debian.org/debian) or AT_UBUNTU_MIRROR (default
# http://archive.ubuntu.com/ubuntu).
set -eu
TAG="${1:-debian:bookworm-slim}"
SUITE="${2:-bookworm}"
CACHE="${AT_DEBOOTSTRAP_CACHE:-/var/cache/at-debootstrap}"
DOCKER="${DOCKER:-docker}"

if "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
    echo "base: $TAG already present"
    exit 0
fi

case "$SUITE" in
bookworm)
    MIRROR="${AT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
    set -- --variant=minbase bookworm
    ;;
noble)
    MIRROR="${AT_UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}"
    set -- --variant=minbase --components=main,universe
    # Debian's debootstrap may predate noble; every Ubuntu suite uses the
    # same script.  Without Ubuntu's keyring on the host the download cannot
    # be verified by debootstrap (apt inside the image verifies later
    # installs with the keyring debootstrap installs there).
    if [ -f /usr/share/keyrings/ubuntu-archive-keyring.gpg ]; then
        set -- "$@" --keyring=/usr/share/keyrings/ubuntu-archive-keyring.gpg
    else
        set -- "$@" --no-check-gpg
    fi
    set -- "$@" noble
    ;;
*)
    echo "base: unknown suite '$SUITE' (bookworm or noble)" >&2
    exit 2
    ;;
esac

tarball="$CACHE/$SUITE-minbase.tar"
if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || { echo "base: debootstrap is not installed" >&2; exit 1; }
    mkdir -p "$CACHE"
    root="$CACHE/$SUITE-rootfs.tmp"
    rm -rf "$root"
    script=""
    [ "$SUITE" = noble ] && [ ! -e /usr/share/debootstrap/scripts/noble ] &&
        script=/usr/share/debootstrap/scripts/gutsy
    echo "base: debootstrap $* ($MIRROR), about a minute"
    # shellcheck disable=SC2086
    if ! debootstrap "$@" "$root" "$MIRROR" $script >"$CACHE/$SUITE-debootstrap.log" 2>&1; then
        tail -20 "$CACHE/$SUITE-debootstrap.log" >&2
        echo "base: debootstrap failed (log: $CACHE/$SUITE-debootstrap.log)" >&2
        exit 1
    fi
    if [ "$SUITE" = bookworm ]; then
        # What the official slim image does: no docs, man pages or
        # translations from later installs, apt caches cleared after each
        # install, the three usual suites.
        cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
CFG
        cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
        printf 'Acquire::Languages "none";\n' >"$root/etc/apt/apt.conf.d/docker-no-languages"
        cat >"$root/etc/apt/sources.list" <<SRC
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SRC
        rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
        find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    else
        rm -f "$root"/etc/apt/sources.list.d/*
        cat >"$root/etc/apt/sources.list" <<SRC
deb $MIRROR noble main universe
deb $MIRROR noble-updates main universe
deb http://security.ubuntu.com/ubuntu noble-security main universe
SRC
    fi
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
           "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/tmp/*
    tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
fi
echo "base: importing $tarball as $TAG"
"$DOCKER" import --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$tarball" "$TAG" >/dev/null
"$DOCKER" image inspect -f "base: $TAG {{.Size}} bytes" "$TAG"
