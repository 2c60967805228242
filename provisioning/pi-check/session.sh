#!/bin/bash
# make pi-check, inside the arm64 root after first boot (no network but loopback): start the
# installed agent as the service user with the unit's ExecStart and environment, then check
# /healthz, doctor, and a recharge + metered chat against its embedded relay and chain stand-in.
# Prints one "STEP <name> <seconds> <ok|FAIL>" line per check. Env: EXEC_START, UNIT_ENV (the
# unit's Environment= assignments), SERVICE_USER.
set -uo pipefail
ip link set lo up
X=/opt/xephy-device/venv/bin/xephy-device
CONFIG=/etc/xephy-device/config.yaml
export RUNTIME_DIRECTORY=/run/xephy-device STATE_DIRECTORY=/var/lib/xephy-device
export CACHE_DIRECTORY=/var/cache/xephy-device CONFIGURATION_DIRECTORY=/etc/xephy-device
mkdir -p "$CACHE_DIRECTORY" && chown "$SERVICE_USER:$SERVICE_USER" "$CACHE_DIRECTORY" && chmod 0700 "$CACHE_DIRECTORY"
FAILED=0

step() {
    local name=$1 start rc
    shift
    start=$(date +%s.%N)
    "$@" > "/tmp/pi-check-$name.log" 2>&1
    rc=$?
    local secs
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
    if [ $rc = 0 ]; then echo "STEP $name $secs ok"; else echo "STEP $name $secs FAIL"; FAILED=1; sed 's/^/    /' "/tmp/pi-check-$name.log" | tail -40; fi
    return $rc
}

AGENT_PID=""
start_agent() {
    cd "$STATE_DIRECTORY" || return 1
    # shellcheck disable=SC2086
    env $UNIT_ENV setpriv --reuid="$SERVICE_USER" --regid="$SERVICE_USER" --init-groups \
        $EXEC_START > /tmp/pi-check-agent.log 2>&1 &
    AGENT_PID=$!
    cd /root || return 1
    for _ in $(seq 600); do
        if [ -S "$RUNTIME_DIRECTORY/chat.sock" ] && [ -f "$STATE_DIRECTORY/endpoints.json" ]; then return 0; fi
        kill -0 "$AGENT_PID" 2>/dev/null || { cat /tmp/pi-check-agent.log; return 1; }
        sleep 0.5
    done
    cat /tmp/pi-check-agent.log
    return 1
}

healthz() {
    /opt/xephy-device/venv/bin/python - <<'EOF'
import json, socket
s = socket.socket(socket.AF_UNIX)
s.connect("/run/xephy-device/chat.sock")
s.sendall(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
head, _, body = data.partition(b"\r\n\r\n")
assert head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200"), head
print(json.dumps(json.loads(body)))
EOF
}

doctor() {
    env $UNIT_ENV setpriv --reuid="$SERVICE_USER" --regid="$SERVICE_USER" --init-groups \
        "$X" doctor --config "$CONFIG"
}

# Each command runs only if the one before it succeeded (`set -e` does not apply inside `step ... &&`).
recharge() {
    cd /root \
        && "$X" user keygen --keypair user.json --config "$CONFIG" \
        && "$X" user airdrop 2 --keypair user.json --config "$CONFIG" \
        && "$X" user register --keypair user.json --config "$CONFIG" \
        && "$X" user deposit 0.1 --keypair user.json --config "$CONFIG" \
        && "$X" user recharge --keypair user.json --config "$CONFIG"
}

chat() {
    # Metered: the chat's tokens were debited from the 5,000,000 the recharge granted.
    cd /root \
        && "$X" chat --keypair user.json --config "$CONFIG" -m "What is the capital of France?" --max-tokens 16 \
        && "$X" user balance --keypair user.json --config "$CONFIG" --json > /tmp/balance.json \
        && python3 -c 'import json; t = json.load(open("/tmp/balance.json"))["tokens"]; print("tokens left", t); assert 0 < t < 5_000_000'
}

step agent-ready start_agent && {
    step healthz healthz
    step doctor doctor
    step recharge recharge && step metered-chat chat
}
if [ -n "$AGENT_PID" ]; then
    kill -TERM "$AGENT_PID" 2>/dev/null
    wait "$AGENT_PID" 2>/dev/null
    echo "agent stopped (exit $?)"
fi
exit $FAILED
