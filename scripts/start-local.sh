#!/usr/bin/env bash
# Start execd locally: a private bus, the daemon and the bridge on 127.0.0.1:44772.
# Stops everything on Ctrl-C.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${EXECD_BUILD_DIR:-$root/build}
port=${EXECD_PORT:-44772}
"$root/scripts/bootstrap.sh"

run=$(mktemp -d /tmp/execd-local-XXXXXX)
chmod 711 "$run" # environment uids walk through to their directories under state/; files inside stay 0600
pids=()
cleanup() {
        for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
        wait 2>/dev/null || true
        rm -rf "$run"
}
trap cleanup EXIT INT TERM

address="unix:path=$run/bus"
dbus-daemon --config-file="$root/tests/dbus-test.conf" --nofork --nopidfile --address="$address" &
pids+=($!)
for _ in $(seq 100); do [ -S "$run/bus" ] && break; sleep 0.05; done

"$build/daemon/execd" --bus-address="$address" --state-dir="$run/state" &
pids+=($!)
for _ in $(seq 100); do busctl --address="$address" status org.execd.Execd1 >/dev/null 2>&1 && break; sleep 0.05; done

token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
(umask 077 && printf '%s\n' "$token" > "$run/token")
api_key=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
(umask 077 && printf '%s\n' "$api_key" > "$run/api-keys")
"$build/bridge/execd-bridge" --bus-address="$address" --listen="127.0.0.1:$port" --token-file="$run/token" \
        --api-keys="$run/api-keys" &
pids+=($!)
for _ in $(seq 100); do curl -fs -o /dev/null -H "X-EXECD-ACCESS-TOKEN: $token" "http://127.0.0.1:$port/ping" && break; sleep 0.05; done

cat <<EOT

execd is running.
  bus address:  $address
  HTTP:         http://127.0.0.1:$port
  access token: $token
  API key:      $api_key   (task environments: /api/v1/…)

Try:
  curl -N -H 'X-EXECD-ACCESS-TOKEN: $token' -H 'Content-Type: application/json' \\
       -d '{"command":"echo hello from execd; uname -a"}' http://127.0.0.1:$port/command
  busctl --address=$address call org.execd.Execd1 /org/execd/Execd1 org.execd.Execd1.Manager \\
       RunCommand 'sa{sv}' 'echo hi' 1 background b true

Press Ctrl-C to stop.
EOT
wait
