"""Output and Exited go to the owner only, never broadcast."""
import time

from busclient import COMMAND_IFACE, hdr, stream_bytes


def test_other_connection_gets_no_output(env):
    owner = env.connect()
    spy = env.connect()
    spy.add_match(f"type='signal',interface='{COMMAND_IFACE}'")
    spy.add_match("type='signal',member='Output'")
    spy.add_match("type='signal',member='Exited'")
    path = owner.run("echo secret; echo secret2 >&2; exit 2")
    outputs, exited, _ev = owner.wait_exit(path)
    assert stream_bytes(outputs, "stdout") == b"secret\n"
    assert exited == (2, 0, False)
    spy.pump(1.0)
    leaked = [m for m in spy.signals if hdr(m, "interface") == COMMAND_IFACE or
              hdr(m, "member") in ("Output", "Exited")]
    assert leaked == [], [(hdr(m, "path"), hdr(m, "member")) for m in leaked]


def test_other_connection_of_same_uid_gets_nothing_while_streaming(env):
    owner = env.connect()
    spy = env.connect()
    spy.add_match(f"type='signal',interface='{COMMAND_IFACE}'")
    path = owner.run("for i in 1 2 3 4 5; do echo tick$i; sleep 0.1; done")
    t_end = time.monotonic() + 5
    outputs, exited, _ev = owner.wait_exit(path, timeout=5)
    assert time.monotonic() < t_end
    assert stream_bytes(outputs, "stdout") == b"tick1\ntick2\ntick3\ntick4\ntick5\n"
    spy.pump(1.0)
    assert [m for m in spy.signals if hdr(m, "interface") == COMMAND_IFACE] == []
