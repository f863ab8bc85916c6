# SPDX-License-Identifier: Apache-2.0
"""The --help texts of execd and execd-bridge come out translated with LANGUAGE set.

The binaries honour TEXTDOMAINDIR (falling back to the compiled-in LOCALEDIR), so the
catalogs meson compiles into <builddir>/po/<lang>/LC_MESSAGES/execd.mo are used uninstalled.
glibc ignores LANGUAGE only when the locale is plain "C"/"POSIX"; C.UTF-8 (always present
on glibc >= 2.35) is enough for it to be honoured.
"""
import os
import subprocess
from pathlib import Path

import pytest

BUILD_ROOT = Path(os.environ.get("EXECD_BUILD_ROOT", Path(__file__).resolve().parents[2] / "build"))
EXECD = BUILD_ROOT / "daemon" / "execd"
BRIDGE = BUILD_ROOT / "bridge" / "execd-bridge"
LOCALEDIR = BUILD_ROOT / "po"
LANGS = ("de", "zh_CN")

# Column at which execd's --help descriptions start (the option part is never translated).
OPTION_WIDTH = 26


@pytest.fixture(scope="module", autouse=True)
def catalogs():
    for lang in LANGS:
        mo = LOCALEDIR / lang / "LC_MESSAGES" / "execd.mo"
        assert mo.is_file(), f"{mo} missing: build the execd-gmo target"
    for binary in (EXECD, BRIDGE):
        assert binary.is_file(), f"{binary} missing"


def run(argv, language=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_") and k != "LANGUAGE"}
    env["LANG"] = "C.UTF-8"
    env["TEXTDOMAINDIR"] = str(LOCALEDIR)
    if language:
        env["LANGUAGE"] = language
    return subprocess.run([str(a) for a in argv], env=env, capture_output=True, text=True,
                          encoding="utf-8", timeout=30)


def help_text(binary, language=None):
    r = run([binary, "--help"], language)
    assert r.returncode == 0, r.stderr
    return r.stdout


def option_columns(text):
    """The untranslated option part of each option line of execd --help."""
    return [line[:OPTION_WIDTH] for line in text.splitlines() if line.startswith(("  -", "     --"))]


def test_english_without_language():
    daemon = help_text(EXECD)
    assert "Usage: execd [OPTIONS]" in daemon
    assert "Show this help" in daemon
    assert "Log debug messages" in daemon
    bridge = help_text(BRIDGE)
    assert "HTTP bridge to the execd daemon: the execd REST and SSE API." in bridge
    assert "Talk to the daemon on the session bus" in bridge
    assert "--token-file=FILE" in bridge


def test_german():
    daemon = help_text(EXECD, "de")
    assert "Aufruf: execd [OPTIONEN]" in daemon
    assert "Ausführungsdienst" in daemon
    assert "Diese Hilfe anzeigen" in daemon
    assert "Debug-Meldungen protokollieren" in daemon
    assert "Show this help" not in daemon
    bridge = help_text(BRIDGE, "de")
    assert "HTTP-Brücke zum execd-Daemon" in bridge
    assert "Über den Sitzungsbus mit dem Daemon kommunizieren" in bridge
    assert "--token-file=DATEI" in bridge
    assert "Talk to the daemon" not in bridge


def test_chinese():
    daemon = help_text(EXECD, "zh_CN")
    assert "用法：execd [选项]" in daemon
    assert "显示此帮助" in daemon
    assert "记录调试消息" in daemon
    assert "Show this help" not in daemon
    bridge = help_text(BRIDGE, "zh_CN")
    assert "execd 守护进程的 HTTP 桥接" in bridge
    assert "通过会话总线与守护进程通信" in bridge
    assert "Talk to the daemon" not in bridge


@pytest.mark.parametrize("lang", LANGS)
def test_help_layout_kept(lang):
    english = help_text(EXECD)
    translated = help_text(EXECD, lang)
    assert option_columns(translated) == option_columns(english)
    assert len(translated.splitlines()) == len(english.splitlines())
    assert translated.endswith("\n")


@pytest.mark.parametrize("lang,expected", [
    ("de", "execd: Ungültiger Wert „abc“ für --ring-size"),
    ("zh_CN", "execd：选项 --ring-size 的值“abc”无效"),  # positional %n$s arguments
    (None, "execd: invalid value 'abc' for --ring-size"),
])
def test_error_message(lang, expected):
    r = run([EXECD, "--ring-size=abc"], lang)
    assert r.returncode != 0
    assert expected in r.stderr
