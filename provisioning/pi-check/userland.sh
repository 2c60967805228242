#!/bin/bash
# Build (once) a Debian arm64 userland shaped like Raspberry Pi OS Lite, as a tarball in the cache.
# Usage: userland.sh RELEASE CACHE_DIR   (root; debootstrap + qemu-user-static under binfmt)
# Output: CACHE_DIR/userland-RELEASE-arm64.tar (reused when present).
set -euo pipefail
RELEASE="${1:?usage: userland.sh RELEASE CACHE_DIR}"
CACHE="${2:?usage: userland.sh RELEASE CACHE_DIR}"
MIRROR="${XEPHY_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
OUT="$CACHE/userland-$RELEASE-arm64.tar"
[ -f "$OUT" ] && { echo "userland $RELEASE: cached ($OUT)"; exit 0; }
mkdir -p "$CACHE"
WORK="$CACHE/userland-$RELEASE.tmp"
rm -rf "$WORK"
# What Raspberry Pi OS Lite has and first boot relies on: systemd, Python 3 with venv, sudo-less
# privilege drop (util-linux setpriv), CA certificates.
PACKAGES=systemd,systemd-sysv,python3,python3-venv,ca-certificates,iproute2,procps
debootstrap --arch=arm64 --variant=minbase --include="$PACKAGES" "$RELEASE" "$WORK" "$MIRROR"
rm -rf "$WORK/var/cache/apt/archives/"*.deb "$WORK/var/lib/apt/lists/"*_Packages 2>/dev/null || true
tar -C "$WORK" --numeric-owner -cf "$OUT.tmp" .
mv "$OUT.tmp" "$OUT"
rm -rf "$WORK"
echo "userland $RELEASE: built ($OUT, $(du -h "$OUT" | cut -f1))"
