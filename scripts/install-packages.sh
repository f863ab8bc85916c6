#!/usr/bin/env bash
# Install the named Debian packages that are missing: scripts/install-packages.sh WHO PKG...
# (WHO prefixes the message). The one place the scripts install from Debian's archive.
set -euo pipefail

who=$1
shift
missing=()
for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
        echo "$who: installing ${missing[*]}"
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

