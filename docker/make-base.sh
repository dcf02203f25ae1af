#!/bin/sh
# Builds a local debian:bookworm-slim look-alike with debootstrap when no
# registry can be reached (CI, air-gapped hosts), and imports it into docker.
#
#   docker/make-base.sh [TAG] [CACHE_DIR]
#
# TAG defaults to debian:bookworm-slim; CACHE_DIR (default
# /var/cache/at-debootstrap) keeps the root file system tarball so a second
# call in the same run, or a later run on the same machine, only imports it.
# Does nothing when TAG already exists.  Needs root, debootstrap and a
# reachable Debian mirror (AT_DEBIAN_MIRROR, default http://deb.debian.org/debian).
set -eu
TAG="${1:-debian:bookworm-slim}"
CACHE="${2:-${AT_DEBOOTSTRAP_CACHE:-/var/cache/at-debootstrap}}"
MIRROR="${AT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DOCKER="${DOCKER:-/usr/bin/docker}"

if "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
    echo "base: $TAG already present"
    exit 0
fi
tarball="$CACHE/bookworm-minbase.tar"
if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || { echo "base: debootstrap is not installed" >&2; exit 1; }
    mkdir -p "$CACHE"
    root="$CACHE/rootfs.tmp"
    rm -rf "$root"
    echo "base: debootstrap --variant=minbase bookworm ($MIRROR), about 30 s"
    if ! debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1; then
        tail -20 "$CACHE/debootstrap.log" >&2
        echo "base: debootstrap failed (log: $CACHE/debootstrap.log)" >&2
        exit 1
    fi
    # What the official slim image does: no docs, man pages or translations
    # from later installs, apt lists and package caches cleared, the three
    # usual suites.
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
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        >"$root/etc/apt/apt.conf.d/docker-no-recommends"
    cat >"$root/etc/apt/sources.list" <<SRC
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SRC
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
           "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/tmp/* \
           "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
fi
echo "base: importing $tarball as $TAG"
"$DOCKER" import --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$tarball" "$TAG" >/dev/null
"$DOCKER" image inspect -f 'base: {{.Size}} bytes' "$TAG"
