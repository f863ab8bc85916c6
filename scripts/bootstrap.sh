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
"$root/scripts/install-packages.sh" bootstrap "${packages[@]}"

if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" "$root" ${EXECD_MESON_ARGS:-}
fi
ninja -C "$build"
