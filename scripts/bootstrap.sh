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
        python3 python3-pytest python3-requests python3-dbus python3-jeepney
        wrk
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
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" "$root" ${EXECD_MESON_ARGS:-}
fi
ninja -C "$build"
