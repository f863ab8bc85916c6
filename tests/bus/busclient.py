"""A small blocking D-Bus client for the execd bus tests, built on jeepney 0.8.

Self-contained (stdlib + jeepney only): the ownership tests run this file's source in a
helper process under another uid.
"""
import os
import socket
import time

from jeepney import DBusAddress, HeaderFields, MessageType, new_method_call, new_method_return
from jeepney.bus import get_bus
from jeepney.fds import FileDescriptor, fds_buf_size
from jeepney.io.blocking import DBusConnection, prep_socket

BUS_NAME = "org.execd.Execd1"
MANAGER_PATH = "/org/execd/Execd1"
MANAGER_IFACE = "org.execd.Execd1.Manager"
COMMAND_IFACE = "org.execd.Execd1.Command"
PROPS_IFACE = "org.freedesktop.DBus.Properties"
OM_IFACE = "org.freedesktop.DBus.ObjectManager"
COMMAND_PREFIX = "/org/execd/Execd1/command/"
FILES_PATH = "/org/execd/Execd1/files"
FILES_IFACE = "org.execd.Execd1.Files"

ERR_INVALID_ARGUMENT = "org.execd.Execd1.Error.InvalidArgument"
ERR_LIMITS = "org.execd.Execd1.Error.LimitsExceeded"
ERR_NOT_OWNER = "org.execd.Execd1.Error.NotOwner"
ERR_NOT_RUNNING = "org.execd.Execd1.Error.NotRunning"
ERR_ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
ERR_UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
ERR_INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"
ERR_START_FAILED = "org.execd.Execd1.Error.StartFailed"
ERR_NOT_FOUND = "org.execd.Execd1.Error.NotFound"
ERR_ALREADY_EXISTS = "org.execd.Execd1.Error.AlreadyExists"
ERR_IS_DIRECTORY = "org.execd.Execd1.Error.IsDirectory"
ERR_NOT_DIRECTORY = "org.execd.Execd1.Error.NotDirectory"
ERR_INVALID_PATH = "org.execd.Execd1.Error.InvalidPath"

# Sanitizer builds run the daemon several times slower.
DEFAULT_TIMEOUT = 10.0 * (3 if os.environ.get("ASAN_OPTIONS") else 1)


class DBusError(Exception):
    def __init__(self, name, message):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


class _FastConnection(DBusConnection):
    """jeepney reads 4 KiB per recv(); read bigger pieces (multi-MiB replies)."""

    def _read_some_data(self, timeout=None):
        for key, _ev in self.selector.select(timeout):
            if key == self.select_key:
                if self.enable_fds:
                    b, ancdata, flags, _ = self.sock.recvmsg(1 << 20, fds_buf_size())
                    if flags & getattr(socket, "MSG_CTRUNC", 0):
                        raise RuntimeError("unable to receive all file descriptors")
                    fds = FileDescriptor.from_ancdata(ancdata)
                else:
                    b, fds = self.sock.recv(1 << 20), []
                if not b:
                    raise ConnectionResetError("connection closed")
                return b, fds
        raise TimeoutError


class Client:
    """One bus connection. Signals received while waiting for replies are kept in
    self.signals (in arrival order) until a wait_* helper consumes them.

    With enable_fds=True the connection negotiates Unix fd passing: 'h' values in replies
    arrive as jeepney FileDescriptor objects (convert or close them)."""

    def __init__(self, address, enable_fds=False):
        sock = prep_socket(get_bus(address), enable_fds, timeout=5.0)
        self.conn = _FastConnection(sock, enable_fds)
        self.unique_name = self.conn.unique_name
        self.signals = []
        self.closed = False

    # -- low level ------------------------------------------------------------------
    def close(self):
        if not self.closed:
            self.closed = True
            self.conn.close()

    def _receive(self, deadline):
        """Next message; answers org.freedesktop.DBus.Peer.Ping on the way, as every D-Bus
        library does (execd uses it to learn that a client reads its output)."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out waiting for a D-Bus message")
            m = self.conn.receive(timeout=remaining)
            if (m.header.message_type == MessageType.method_call
                    and m.header.fields.get(HeaderFields.interface) == "org.freedesktop.DBus.Peer"
                    and m.header.fields.get(HeaderFields.member) == "Ping"):
                self.conn.send(new_method_return(m))
                continue
            return m

    def send_msg(self, msg, timeout=DEFAULT_TIMEOUT):
        """Send msg and wait for its reply; return the body; raise DBusError."""
        serial = next(self.conn.outgoing_serial)
        self.conn.send(msg, serial=serial)
        deadline = time.monotonic() + timeout
        while True:
            m = self._receive(deadline)
            if m.header.fields.get(HeaderFields.reply_serial) == serial:
                if m.header.message_type == MessageType.error:
                    name = m.header.fields.get(HeaderFields.error_name, "")
                    text = m.body[0] if m.body and isinstance(m.body[0], str) else ""
                    raise DBusError(name, text)
                return m.body
            if m.header.message_type == MessageType.signal:
                self.signals.append(m)

    def call(self, path, iface, member, signature=None, body=(), dest=BUS_NAME,
             timeout=DEFAULT_TIMEOUT):
        addr = DBusAddress(path, bus_name=dest, interface=iface)
        return self.send_msg(new_method_call(addr, member, signature, tuple(body)),
                             timeout=timeout)

    def bus_call(self, member, signature=None, body=()):
        return self.call("/org/freedesktop/DBus", "org.freedesktop.DBus", member,
                         signature, body, dest="org.freedesktop.DBus")

    def add_match(self, rule):
        self.bus_call("AddMatch", "s", (rule,))

    def files(self, member, signature=None, body=(), timeout=DEFAULT_TIMEOUT):
        """Call a method of org.execd.Execd1.Files; return the reply body."""
        return self.call(FILES_PATH, FILES_IFACE, member, signature, body, timeout=timeout)

    # -- execd API --------------------------------------------------------------------
    def run(self, command, timeout=DEFAULT_TIMEOUT, **options):
        """RunCommand with options given as Python values, typed per the contract."""
        types = {"cwd": "s", "envs": "a{ss}", "timeout_ms": "t", "uid": "u", "gid": "u",
                 "background": "b", "ack_window": "t"}
        opts = {}
        for k, v in options.items():
            if isinstance(v, tuple):  # explicit (signature, value)
                opts[k] = v
            else:
                opts[k] = (types[k], v)
        return self.run_raw(command, opts, timeout=timeout)

    def run_raw(self, command, opts, timeout=DEFAULT_TIMEOUT):
        (path,) = self.call(MANAGER_PATH, MANAGER_IFACE, "RunCommand", "sa{sv}",
                            (command, opts), timeout=timeout)
        return path

    def run_wait(self, command, timeout=DEFAULT_TIMEOUT, **options):
        """RunCommand, then wait for Exited: (path, outputs, exited)."""
        path = self.run(command, **options)
        outputs, exited, _events = self.wait_exit(path, timeout=timeout)
        return path, outputs, exited

    def get(self, path, name, iface=COMMAND_IFACE, timeout=DEFAULT_TIMEOUT):
        (var,) = self.call(path, PROPS_IFACE, "Get", "ss", (iface, name), timeout=timeout)
        return var[1]

    def get_all(self, path, iface=COMMAND_IFACE, timeout=DEFAULT_TIMEOUT):
        (d,) = self.call(path, PROPS_IFACE, "GetAll", "s", (iface,), timeout=timeout)
        return {k: v[1] for k, v in d.items()}

    def managed_objects(self):
        (objs,) = self.call(MANAGER_PATH, OM_IFACE, "GetManagedObjects")
        return objs

    def command_paths(self):
        return sorted(p for p in self.managed_objects() if p.startswith(COMMAND_PREFIX))

    def signal(self, path, signo):
        self.call(path, COMMAND_IFACE, "Signal", "i", (signo,))

    def interrupt(self, path):
        self.call(path, COMMAND_IFACE, "Interrupt")

    def ack(self, path, seq):
        self.call(path, COMMAND_IFACE, "Ack", "t", (seq,))

    def read_output(self, path, from_seq, timeout=DEFAULT_TIMEOUT):
        chunks, next_seq = self.call(path, COMMAND_IFACE, "ReadOutput", "t", (from_seq,),
                                     timeout=timeout)
        return [tuple(c) for c in chunks], next_seq

    def read_output_all(self, path, from_seq=0, timeout=DEFAULT_TIMEOUT):
        """Page through ReadOutput until it returns no chunks."""
        out = []
        deadline = time.monotonic() + timeout
        seq = from_seq
        while True:
            chunks, next_seq = self.read_output(path, seq,
                                                timeout=max(0.1, deadline - time.monotonic()))
            if not chunks:
                return out, next_seq
            out.extend(chunks)
            assert next_seq > seq, (seq, next_seq)
            seq = next_seq

    def read_log(self, path, offset, max_bytes=0, timeout=DEFAULT_TIMEOUT):
        data, next_offset = self.call(path, COMMAND_IFACE, "ReadLog", "tu",
                                      (offset, max_bytes), timeout=timeout)
        return bytes(data), next_offset

    # -- signals ----------------------------------------------------------------------
    def wait_signal(self, pred, timeout=DEFAULT_TIMEOUT):
        """Return (and remove) the first queued/incoming signal for which pred(msg)."""
        for i, m in enumerate(self.signals):
            if pred(m):
                return self.signals.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            m = self._receive(deadline)
            if m.header.message_type != MessageType.signal:
                continue
            if pred(m):
                return m
            self.signals.append(m)

    def pump(self, duration):
        """Receive whatever arrives for `duration` seconds into self.signals."""
        deadline = time.monotonic() + duration
        while True:
            try:
                m = self._receive(deadline)
            except TimeoutError:
                return
            if m.header.message_type == MessageType.signal:
                self.signals.append(m)

    def take_signals(self, path=None, member=None):
        """Remove and return queued signals matching path/member (in order)."""
        keep, out = [], []
        for m in self.signals:
            if (path is None or hdr(m, "path") == path) and \
               (member is None or hdr(m, "member") == member):
                out.append(m)
            else:
                keep.append(m)
        self.signals = keep
        return out

    def wait_exit(self, path, timeout=DEFAULT_TIMEOUT):
        """Collect this command's Output signals until its Exited.

        Returns (outputs, exited, events) where outputs is a list of (seq, stream, data),
        exited is (exit_code, signal, timed_out) and events the ordered list of
        ("Output"|"Exited", body) for ordering checks. After Exited, a round trip to the
        daemon makes sure any Output sent before that reply shows up in events too."""
        events = []
        deadline = time.monotonic() + timeout

        def is_ours(m):
            return hdr(m, "path") == path and hdr(m, "interface") == COMMAND_IFACE and \
                hdr(m, "member") in ("Output", "Exited")

        exited = None
        while exited is None:
            m = self.wait_signal(is_ours, timeout=max(0.0, deadline - time.monotonic()))
            events.append((hdr(m, "member"), m.body))
            if hdr(m, "member") == "Exited":
                exited = tuple(m.body)
        # Round trip: anything the daemon queued before this reply arrives before it.
        self.call(path, PROPS_IFACE, "Get", "ss", (COMMAND_IFACE, "Running"))
        for m in self.take_signals(path=path):
            if hdr(m, "member") in ("Output", "Exited"):
                events.append((hdr(m, "member"), m.body))
        outputs = [(b[0], b[1], bytes(b[2])) for name, b in events if name == "Output"]
        return outputs, exited, events


_HDR = {"path": HeaderFields.path, "interface": HeaderFields.interface,
        "member": HeaderFields.member, "destination": HeaderFields.destination,
        "sender": HeaderFields.sender, "error_name": HeaderFields.error_name}


def hdr(msg, name):
    return msg.header.fields.get(_HDR[name])


def stream_bytes(outputs, stream):
    return b"".join(d for _s, st, d in outputs if st == stream)
