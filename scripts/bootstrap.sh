#!/usr/bin/env bash
# Shared first step of the README's two commands: install what is missing from Debian's
# archive, then configure and build into $EXECD_BUILD_DIR (default: build/).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${EXECD_BUILD_DIR:-$root/build}

packages=(
        meson ninja-build pkg-config gcc gettext
        libsystemd-dev libglib2.0-dev libsoup-3.0-dev libjson-glib-dev
        dbus dbus-daemon systemd curl
        python3 python3-pytest python3-requests python3-dbus python3-jeepney python3-dbusmock
        wrk nginx-light libzmq3-dev python3-ipykernel scdoc
)
missing=()
for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
        echo "bootstrap: installing ${missing[*]}"
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        # nginx's postinst starts the system nginx on port 80; the benchmarks only run private
        # instances, so forbid service starts while installing (policy-rc.d exit 101), and only
        # remove the file when we created it.
        policy=/usr/sbin/policy-rc.d
        created_policy=""
        if [ ! -e "$policy" ]; then
                created_policy=1
                trap '$sudo rm -f "$policy"' EXIT
                printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
                $sudo chmod 755 "$policy"
        fi
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        if [ -n "$created_policy" ]; then
                $sudo rm -f "$policy"
                trap - EXIT
        fi
fi

if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" "$root" ${EXECD_MESON_ARGS:-}
fi
ninja -C "$build"
