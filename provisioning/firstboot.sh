#!/bin/bash
# xephy-device first-boot installer (written to the boot partition by `xephy-device provision`).
#
# Runs once, as root, on the Raspberry Pi: from cloud-init's runcmd (Trixie-style images) or
# from firstrun.sh via systemd.run= (Bookworm-style). Usage: firstboot.sh BUNDLE_DIR [--start]
# BUNDLE_DIR is the xephy/ folder on the boot partition (/boot/firmware/xephy).
# Safe to re-run: every step converges. Log: /var/log/xephy-firstboot.log
set -euo pipefail

BUNDLE="${1:?usage: firstboot.sh BUNDLE_DIR [--start]}"
START="${2:-}"
VENV=/opt/xephy-device/venv
STATE=/var/lib/xephy-device
exec >>/var/log/xephy-firstboot.log 2>&1
echo "== xephy-device first boot $(date -u +%FT%TZ) from $BUNDLE"

# 1. Service user and groups (xephy, xephy-chat; xephy joins gpio and dialout), directories.
install -D -m 0644 "$BUNDLE/systemd/sysusers.conf" /usr/lib/sysusers.d/xephy-device.conf
install -D -m 0644 "$BUNDLE/systemd/tmpfiles.conf" /usr/lib/tmpfiles.d/xephy-device.conf
systemd-sysusers /usr/lib/sysusers.d/xephy-device.conf
systemd-tmpfiles --create /usr/lib/tmpfiles.d/xephy-device.conf

# 2. Configuration (no secrets in it) and keys (mode 0600, owned by xephy, then removed from FAT).
install -d -m 0755 /etc/xephy-device
install -m 0644 "$BUNDLE/config.yaml" /etc/xephy-device/config.yaml
install -d -m 0700 -o xephy -g xephy "$STATE"
for key in nostr.key solana-bot.json; do
    if [ -f "$BUNDLE/keys/$key" ]; then
        install -m 0600 -o xephy -g xephy "$BUNDLE/keys/$key" "$STATE/$key"
        rm -f "$BUNDLE/keys/$key"
    fi
done
rmdir "$BUNDLE/keys" 2>/dev/null || true

# 3. The agent in a venv. python3-lgpio comes from apt (no PyPI wheel for Trixie's Python 3.13),
#    hence --system-site-packages. Offline from the wheelhouse when one was provisioned.
if ! python3 -c 'import venv, ensurepip' 2>/dev/null || ! python3 -c 'import lgpio' 2>/dev/null; then
    apt-get update || true
    apt-get install -y --no-install-recommends python3-venv python3-lgpio || true
fi
[ -x "$VENV/bin/python" ] || python3 -m venv --system-site-packages "$VENV"
if [ -d "$BUNDLE/wheelhouse" ]; then
    "$VENV/bin/pip" install --no-index --find-links "$BUNDLE/wheelhouse" "$BUNDLE/xephy-llm-device.tar.gz"
else
    # llama-cpp-python is a source distribution: building it on the Pi needs a compiler and cmake.
    apt-get install -y --no-install-recommends build-essential cmake || true
    "$VENV/bin/pip" install "$BUNDLE/xephy-llm-device.tar.gz"
fi

# 4. Units: socket-activated chat socket + Type=notify service with watchdog.
install -m 0644 "$BUNDLE/systemd/xephy-device.service" /etc/systemd/system/xephy-device.service
install -m 0644 "$BUNDLE/systemd/xephy-device.socket" /etc/systemd/system/xephy-device.socket
systemctl daemon-reload
systemctl enable xephy-device.socket xephy-device.service
if [ "$START" = "--start" ]; then
    systemctl start --no-block xephy-device.socket xephy-device.service
fi
touch "$STATE/.provisioned"
echo "== xephy-device installed"
