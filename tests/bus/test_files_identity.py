"""org.execd.Execd1.Files runs every operation with the caller's rights: a client connected
as uid 65534 against root's files."""
import os
import shutil
import tempfile

import pytest

from busclient import ERR_ACCESS_DENIED, ERR_INVALID_PATH
from filesutil import NOBODY, group_name, mkfile, read, run_ops, user_name


def ok(res, name):
    r = res[name]
    assert "ok" in r, f"{name}: {r}"
    return r["ok"]


def error(res, name):
    r = res[name]
    return r.get("error", f"succeeded: {r.get('ok')!r}")


@pytest.fixture(scope="module")
def layout():
    """
    D/            root 0755
      secret      root 0600 "secret data"
      public      root 0644 "public data"
      rootdir/    root 0755
      closed/     root 0700
        inner     root 0644
      nob/        nobody:nogroup 0755
      grpfile     root:nogroup 0640 "group data"
      grpdir/     root:nogroup 0770
    """
    d = os.path.realpath(tempfile.mkdtemp(prefix="execd-files-id-", dir="/tmp"))
    os.chmod(d, 0o755)
    mkfile(os.path.join(d, "secret"), b"secret data", 0o600)
    mkfile(os.path.join(d, "public"), b"public data", 0o644)
    os.mkdir(os.path.join(d, "rootdir"))
    os.chmod(os.path.join(d, "rootdir"), 0o755)
    os.mkdir(os.path.join(d, "closed"))
    os.chmod(os.path.join(d, "closed"), 0o700)
    mkfile(os.path.join(d, "closed", "inner"), b"inner", 0o644)
    nob = os.path.join(d, "nob")
    os.mkdir(nob)
    os.chmod(nob, 0o755)
    os.chown(nob, NOBODY, NOBODY)
    gf = mkfile(os.path.join(d, "grpfile"), b"group data", 0o640)
    os.chown(gf, 0, NOBODY)
    gd = os.path.join(d, "grpdir")
    os.mkdir(gd)
    os.chown(gd, 0, NOBODY)
    os.chmod(gd, 0o770)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def b(data):
    return {"b": data.decode("latin-1")}


@pytest.fixture(scope="module")
def nobody_ops(shared_env, layout):
    d = layout
    j = lambda *p: os.path.join(d, *p)  # noqa: E731
    ops = [
        # denied
        ["open_read_secret", "OpenRead", "s", [j("secret")]],
        ["read_bytes_secret", "ReadBytes", "stt", [j("secret"), 0, 100]],
        ["stat_closed_inner", "Stat", "as", [[j("closed", "inner")]]],
        ["list_closed", "List", "su", [j("closed"), 1]],
        ["search_closed", "Search", "ss", [j("closed"), "*"]],
        ["write_bytes_rootdir", "WriteBytes", "sayuss", [j("rootdir", "new"), b(b"x"), 0, "", ""]],
        ["open_write_rootdir", "OpenWrite", "suss", [j("rootdir", "new2"), 0, "", ""]],
        ["write_bytes_over_public", "WriteBytes", "sayuss", [j("public"), b(b"x"), 0, "", ""]],
        ["remove_files_public", "RemoveFiles", "as", [[j("public")]]],
        ["set_perms_public", "SetPermissions", "a(suss)", [[[j("public"), 0o777, "", ""]]]],
        ["mkdirs_rootdir", "MakeDirectories", "a(suss)", [[[j("rootdir", "d"), 0, "", ""]]]],
        ["move_public", "Move", "a(ss)", [[[j("public"), j("nob", "stolen")]]]],
        ["replace_public", "Replace", "a(sss)", [[[j("public"), "public", "PWNED"]]]],
        ["remove_dirs_closed", "RemoveDirectories", "as", [[j("closed")]]],
        # allowed
        ["stat_public", "Stat", "as", [[j("public")]]],
        ["read_bytes_public", "ReadBytes", "stt", [j("public"), 0, 100]],
        ["open_read_public", "OpenRead", "s", [j("public")]],
        ["write_own", "WriteBytes", "sayuss", [j("nob", "own"), b(b"mine"), 0, "", ""]],
        ["write_own_fd", "OpenWrite+CommitWrite", "", [j("nob", "sub", "own2"), b(b"fd-mine"),
                                                       0o640, "", ""]],
        ["read_own", "ReadBytes", "stt", [j("nob", "own"), 0, 100]],
        ["mkdirs_own", "MakeDirectories", "a(suss)", [[[j("nob", "a", "b"), 0o700, "", ""]]]],
        ["replace_own", "Replace", "a(sss)", [[[j("nob", "own"), "mine", "ours"]]]],
        # allowed through the caller's group
        ["open_read_grpfile", "OpenRead", "s", [j("grpfile")]],
        ["write_grpdir", "WriteBytes", "sayuss", [j("grpdir", "g"), b(b"via group"), 0, "", ""]],
        # allowed operation, forbidden ownership change
        ["give_to_root", "SetPermissions", "a(suss)", [[[j("nob", "own"), 0, "root", ""]]]],
        ["write_as_root", "WriteBytes", "sayuss", [j("nob", "own3"), b(b"x"), 0, "root", ""]],
    ]
    return run_ops(shared_env.address, ops, user=NOBODY)


def test_nobody_cannot_read_root_0600_file(nobody_ops):
    assert error(nobody_ops, "open_read_secret") == ERR_ACCESS_DENIED
    assert error(nobody_ops, "read_bytes_secret") == ERR_ACCESS_DENIED


def test_nobody_cannot_look_into_0700_dir(nobody_ops):
    assert error(nobody_ops, "stat_closed_inner") == ERR_ACCESS_DENIED
    assert error(nobody_ops, "list_closed") == ERR_ACCESS_DENIED
    assert error(nobody_ops, "search_closed") == ERR_ACCESS_DENIED


def test_nobody_cannot_write_into_root_dir(nobody_ops, layout):
    assert error(nobody_ops, "write_bytes_rootdir") == ERR_ACCESS_DENIED
    assert error(nobody_ops, "open_write_rootdir") == ERR_ACCESS_DENIED
    assert error(nobody_ops, "mkdirs_rootdir") == ERR_ACCESS_DENIED
    assert os.listdir(os.path.join(layout, "rootdir")) == []


def test_nobody_cannot_change_root_files(nobody_ops, layout):
    pub = os.path.join(layout, "public")
    assert error(nobody_ops, "write_bytes_over_public") == ERR_ACCESS_DENIED
    assert error(nobody_ops, "remove_files_public") == ERR_ACCESS_DENIED
    assert error(nobody_ops, "set_perms_public") == ERR_ACCESS_DENIED
    assert error(nobody_ops, "move_public") == ERR_ACCESS_DENIED
    assert error(nobody_ops, "replace_public") == ERR_ACCESS_DENIED
    assert error(nobody_ops, "remove_dirs_closed") == ERR_ACCESS_DENIED
    assert read(pub) == b"public data"
    st = os.lstat(pub)
    assert st.st_mode & 0o7777 == 0o644 and (st.st_uid, st.st_gid) == (0, 0)
    assert not os.path.lexists(os.path.join(layout, "nob", "stolen"))
    assert read(os.path.join(layout, "closed", "inner")) == b"inner"
    assert sorted(os.listdir(layout)) == ["closed", "grpdir", "grpfile", "nob", "public",
                                          "rootdir", "secret"]


def test_nobody_reads_public_files(nobody_ops):
    (infos,) = ok(nobody_ops, "stat_public")
    assert infos[0][1] == "file" and infos[0][5] == "root"
    fd, info = ok(nobody_ops, "open_read_public")
    assert fd == {"fd": "public data"}
    assert info[2] == len(b"public data")
    assert ok(nobody_ops, "read_bytes_public") == [{"b": "public data"}]


def test_nobody_writes_into_own_dir(nobody_ops, layout):
    own = os.path.join(layout, "nob", "own")
    (info,) = ok(nobody_ops, "write_own")
    assert info[5] == user_name(NOBODY) and info[6] == group_name(NOBODY)
    st = os.lstat(own)
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
    assert ok(nobody_ops, "replace_own") == [[1]]
    assert read(own) == b"ours"
    assert (os.lstat(own).st_uid, os.lstat(own).st_gid) == (NOBODY, NOBODY)
    assert ok(nobody_ops, "read_own") == [{"b": "mine"}]  # read before the Replace


def test_nobody_open_write_commit_own_dir(nobody_ops, layout):
    own2 = os.path.join(layout, "nob", "sub", "own2")
    (info,) = ok(nobody_ops, "write_own_fd")
    assert info[5] == user_name(NOBODY) and info[7] == 0o640
    assert read(own2) == b"fd-mine"
    st = os.lstat(own2)
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
    sub = os.lstat(os.path.join(layout, "nob", "sub"))  # parent created as nobody
    assert (sub.st_uid, sub.st_gid) == (NOBODY, NOBODY)


def test_group_permissions_apply(nobody_ops, layout):
    fd, info = ok(nobody_ops, "open_read_grpfile")
    assert fd == {"fd": "group data"}
    (info,) = ok(nobody_ops, "write_grpdir")
    g = os.path.join(layout, "grpdir", "g")
    assert read(g) == b"via group"
    st = os.lstat(g)
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)


def test_nobody_makes_own_directories(nobody_ops, layout):
    ok(nobody_ops, "mkdirs_own")
    for p in (("nob", "a"), ("nob", "a", "b")):
        st = os.lstat(os.path.join(layout, *p))
        assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
    assert os.lstat(os.path.join(layout, "nob", "a", "b")).st_mode & 0o7777 == 0o700


def test_nobody_cannot_give_files_to_root(nobody_ops, layout):
    assert error(nobody_ops, "give_to_root") == ERR_ACCESS_DENIED
    assert os.lstat(os.path.join(layout, "nob", "own")).st_uid == NOBODY
    assert error(nobody_ops, "write_as_root") == ERR_ACCESS_DENIED
    assert not os.path.lexists(os.path.join(layout, "nob", "own3"))


def test_root_is_not_limited(shared_env, layout):
    """A root caller acts as root: it reads the 0600 file and writes into nobody's dir."""
    ops = [["read", "ReadBytes", "stt", [os.path.join(layout, "secret"), 0, 100]],
           ["stat", "Stat", "as", [[os.path.join(layout, "closed", "inner")]]]]
    res = run_ops(shared_env.address, ops)
    assert ok(res, "stat")[0][0][0] == os.path.join(layout, "closed", "inner")
    assert ok(res, "read") == [{"b": "secret data"}]


ROOT_LIKE = ["/", "//", "/.", "/..", "/./", "/tmp/..", "/tmp/../.", ".", "..", "~/../.."]


def test_remove_directories_refuses_root(shared_env, nobody_ops, layout):
    """RemoveDirectories of "/" and paths ending in "/." or "/.." -> InvalidPath.

    Run as uid 65534 and only once that uid has been shown to be unable to remove root's
    files, so that a broken implementation cannot wipe the machine."""
    if error(nobody_ops, "remove_files_public") != ERR_ACCESS_DENIED or \
            not os.path.exists(os.path.join(layout, "public")):
        pytest.fail("refusing to send RemoveDirectories(\"/\"): calls as uid 65534 are not "
                    "confined to that uid's rights")
    nob = os.path.join(layout, "nob")
    canary = mkfile(os.path.join(nob, "canary", "f"), b"c")
    os.chown(os.path.dirname(canary), NOBODY, NOBODY)
    os.chown(canary, NOBODY, NOBODY)
    paths = ROOT_LIKE + [nob + "/canary/..", nob + "/canary/."]
    ops = [[p, "RemoveDirectories", "as", [[p]]] for p in paths]
    res = run_ops(shared_env.address, ops, user=NOBODY)
    for p in paths:
        assert error(res, p) == ERR_INVALID_PATH, p
    assert read(canary) == b"c"
