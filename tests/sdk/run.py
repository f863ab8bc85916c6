#!/usr/bin/env python3
"""Run the official OpenSandbox JavaScript SDK (npm @alibaba-group/opensandbox) against the real
execd-bridge: install the pinned SDK into <build>/tests/sdk-node, start a private bus, execd and
execd-bridge (tests/harness.py), then run sdk_test.mjs with EXECD_URL / EXECD_TOKEN.

Exit status is the node script's; 77 (meson's "skipped") when node/npm or the registry is missing.
"""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import harness  # noqa: E402

SKIP = 77


def skip(msg):
    print(f"SKIP: {msg}", flush=True)
    sys.exit(SKIP)


def ensure_sdk():
    """Install package.json's dependencies once into a cache dir; return its node_modules."""
    cache = os.path.join(harness.BUILD_ROOT, "tests", "sdk-node")
    os.makedirs(cache, exist_ok=True)
    src = os.path.join(HERE, "package.json")
    with open(src, "rb") as f:
        want = f.read()
    dst = os.path.join(cache, "package.json")
    stamp = os.path.join(cache, ".installed-package.json")
    modules = os.path.join(cache, "node_modules")
    sdk = os.path.join(modules, "@alibaba-group", "opensandbox", "package.json")
    try:
        with open(stamp, "rb") as f:
            if f.read() == want and os.path.exists(sdk):
                return modules
    except OSError:
        pass
    with open(dst, "wb") as f:
        f.write(want)
    if os.path.exists(stamp):
        os.unlink(stamp)
    print(f"# npm install into {cache}", flush=True)
    try:
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-package-lock"],
                           cwd=cache, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=300)
    except subprocess.TimeoutExpired:
        skip("npm install timed out (registry unreachable?)")
    out = r.stdout.decode(errors="replace")
    if r.returncode != 0 or not os.path.exists(sdk):
        sys.stdout.write(out)
        low = out.lower()
        if any(k in low for k in ("enotfound", "eai_again", "econnrefused", "etimedout",
                                  "network", "econnreset", "unable to get local issuer")):
            skip("npm cannot reach the registry to install @alibaba-group/opensandbox")
        print("npm install failed", flush=True)
        sys.exit(1)
    with open(stamp, "wb") as f:
        f.write(want)
    return modules


def main():
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            skip(f"{tool} is not installed")
    for path in (harness.DAEMON, harness.BRIDGE):
        if not os.access(path, os.X_OK):
            print(f"{path} is not built (set EXECD_BUILD_ROOT)", flush=True)
            return 1
    modules = ensure_sdk()

    bus = harness.Bus()
    daemon = bridge = None
    work = tempfile.mkdtemp(prefix="execd-sdk-")
    os.chmod(work, 0o755)
    try:
        daemon = harness.Daemon(bus, "--kill-grace-ms=1000")
        bridge = harness.Bridge(bus)
        env = dict(os.environ)
        env.update(EXECD_URL=bridge.url, EXECD_TOKEN=bridge.token, EXECD_WORKDIR=work,
                   NODE_PATH=modules)
        # ESM ignores NODE_PATH, so the script resolves the SDK through NODE_PATH itself.
        r = subprocess.run(["node", os.path.join(HERE, "sdk_test.mjs")], env=env, timeout=540)
        if r.returncode != 0:
            print("# daemon log (tail):")
            for line in daemon.read_log().splitlines()[-40:]:
                print(f"#   {line}")
        return r.returncode
    finally:
        if bridge:
            bridge.stop()
        if daemon:
            daemon.stop()
        bus.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
