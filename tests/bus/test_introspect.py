"""The live introspection data matches data/*.xml."""
import os
import xml.etree.ElementTree as ET

import pytest

from busclient import MANAGER_PATH

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "data")
INTROSPECTABLE = "org.freedesktop.DBus.Introspectable"


def describe(xml_text):
    """{interface: {"methods": {name: [(arg, type, dir)]}, "signals": {name: [(arg, type)]},
    "properties": {name: (type, access)}}}, ignoring docs, annotations and
    org.freedesktop.DBus.* interfaces."""
    root = ET.fromstring(xml_text)
    out = {}
    for iface in root.findall("interface"):
        name = iface.get("name")
        if name.startswith("org.freedesktop.DBus."):
            continue
        d = {"methods": {}, "signals": {}, "properties": {}}
        for m in iface.findall("method"):
            assert m.get("name") not in d["methods"], f"duplicate method {m.get('name')}"
            d["methods"][m.get("name")] = [
                (a.get("name"), a.get("type"), a.get("direction", "in"))
                for a in m.findall("arg")]
        for s in iface.findall("signal"):
            d["signals"][s.get("name")] = [(a.get("name"), a.get("type"))
                                           for a in s.findall("arg")]
        for p in iface.findall("property"):
            d["properties"][p.get("name")] = (p.get("type"), p.get("access"))
        out[name] = d
    return out


def read_xml(name):
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        return f.read()


def introspect(client, path):
    (xml_text,) = client.call(path, INTROSPECTABLE, "Introspect")
    return xml_text


def compare(expected, live):
    for iface, exp in expected.items():
        assert iface in live, f"{iface} missing from the live object"
        got = live[iface]
        for kind in ("methods", "signals", "properties"):
            assert got[kind] == exp[kind], f"{iface} {kind} differ:\n" \
                f"expected {exp[kind]}\n     got {got[kind]}"


def test_manager_introspection(env):
    c = env.connect()
    xml_text = introspect(c, MANAGER_PATH)
    live = describe(xml_text)
    compare(describe(read_xml("org.execd.Execd1.Manager.xml")), live)
    names = {i.get("name") for i in ET.fromstring(xml_text).findall("interface")}
    assert "org.freedesktop.DBus.ObjectManager" in names


def test_command_introspection(env):
    c = env.connect()
    path, _o, _e = c.run_wait("true")
    live = describe(introspect(c, path))
    compare(describe(read_xml("org.execd.Execd1.Command.xml")), live)
    assert "org.execd.Execd1.Manager" not in live


def test_metrics_introspection(env):
    c = env.connect()
    live = describe(introspect(c, "/org/execd/Execd1/metrics"))
    compare(describe(read_xml("org.execd.Execd1.Metrics.xml")), live)


def test_files_introspection(env):
    c = env.connect()
    live = describe(introspect(c, "/org/execd/Execd1/files"))
    compare(describe(read_xml("org.execd.Execd1.Files.xml")), live)
    assert "org.execd.Execd1.Manager" not in live


def test_session_introspection(env):
    c = env.connect()
    (path,) = c.call(MANAGER_PATH, "org.execd.Execd1.Manager", "CreateSession", "a{sv}", ({},))
    try:
        live = describe(introspect(c, path))
        compare(describe(read_xml("org.execd.Execd1.Session.xml")), live)
        assert "org.execd.Execd1.Command" not in live
    finally:
        c.call(path, "org.execd.Execd1.Session", "Delete")


def test_context_introspection(env):
    c = env.connect()
    (path,) = c.call(MANAGER_PATH, "org.execd.Execd1.Manager", "CreateContext", "sa{sv}", ("python", {}),
                     timeout=60)
    try:
        live = describe(introspect(c, path))
        compare(describe(read_xml("org.execd.Execd1.Context.xml")), live)
    finally:
        c.call(path, "org.execd.Execd1.Context", "Delete")


def test_environment_introspection(make_env):
    e = make_env()  # the harness gives it a private state directory
    c = e.connect()
    (path, _id, _token) = c.call(MANAGER_PATH, "org.execd.Execd1.Manager", "ProvisionEnvironment", "sssa{ss}",
                                 ("org", "ws", "intro", {}))
    live = describe(introspect(c, path))
    compare(describe(read_xml("org.execd.Execd1.Environment.xml")), live)


def test_every_interface_file_is_checked():
    """A new data/*.xml must get a live comparison above, not drift unchecked."""
    files = sorted(f for f in os.listdir(DATA) if f.startswith("org.execd.Execd1.") and f.endswith(".xml")
                   and f.count(".") == 4)
    assert files == ["org.execd.Execd1.Command.xml", "org.execd.Execd1.Context.xml",
                     "org.execd.Execd1.Environment.xml", "org.execd.Execd1.Files.xml",
                     "org.execd.Execd1.Manager.xml", "org.execd.Execd1.Metrics.xml",
                     "org.execd.Execd1.Session.xml"]


@pytest.mark.parametrize("xml_name", ["org.execd.Execd1.Manager.xml",
                                      "org.execd.Execd1.Context.xml",
                                      "org.execd.Execd1.Environment.xml",
                                      "org.execd.Execd1.Command.xml",
                                      "org.execd.Execd1.Files.xml",
                                      "org.execd.Execd1.Metrics.xml",
                                      "org.execd.Execd1.Session.xml"])
def test_xml_files_parse(xml_name):
    d = describe(read_xml(xml_name))
    assert d, "no interface in the XML"
