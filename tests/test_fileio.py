"""tokenbound.fileio: atomic writes, hashes, stale temporaries, locks (across processes)."""

import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tokenbound import fileio
from tokenbound.errors import UserError

SRC = str(Path(__file__).resolve().parents[1] / "src")
HOLD = """
import sys, time
from tokenbound.fileio import dir_lock
try:
    with dir_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
except Exception as exc:
    print(f"refused: {exc}", flush=True)
    sys.exit(2)
"""


def _holder(directory, seconds=30.0):
    """A subprocess holding the lock of `directory` (once it has printed "held")."""
    env = dict(os.environ, PYTHONPATH=SRC)
    return subprocess.Popen([sys.executable, "-c", HOLD, str(directory), str(seconds)],
                            stdout=subprocess.PIPE, text=True, env=env)


def _full_disk(monkeypatch):
    """Make every fsync fail with ENOSPC (as a full disk does with delayed allocation)."""
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if ".tmp" in p.name or p.name.endswith(".lock"))


def test_atomic_write_replaces_and_leaves_nothing(tmp_path):
    p = tmp_path / "sub" / "x.json"
    fileio.atomic_write_json(p, {"b": 1, "a": [1, 2]}, indent=1, sort_keys=True)
    assert p.read_text() == '{\n "a": [\n  1,\n  2\n ],\n "b": 1\n}\n'
    fileio.atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"new" and _leftovers(p.parent) == []


def test_full_disk_keeps_the_old_file_removes_the_temporary_and_names_the_path(
        tmp_path, monkeypatch):
    p = tmp_path / "m.tbm"
    p.write_bytes(b"old")
    _full_disk(monkeypatch)
    with pytest.raises(UserError, match=f"no space left.*{p}") as info:
        fileio.atomic_write_bytes(p, b"x" * 1000)
    assert "read-only" not in str(info.value) and "\n" not in str(info.value)
    assert p.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_a_directory_as_the_destination_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="is a directory"):
        fileio.atomic_write_bytes(tmp_path, b"x")
    assert _leftovers(tmp_path) == []


def test_hashes(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_bytes(b"")
    assert fileio.file_sha256(tmp_path / "a", chunk=2) == hashlib.sha256(b"abc").hexdigest()
    h = hashlib.sha256()  # by hand: (relative name, sha256) lines, roots in string order
    for name, data in (("a", b"abc"), ("d/b", b"")):
        h.update(f"{name}\0{hashlib.sha256(data).hexdigest()}\n".encode())
    assert fileio.dir_sha256(tmp_path) == h.hexdigest()


def test_sweep_removes_temporaries_of_dead_processes_only(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    names = [f".m.tbm.tmp-{dead.pid}-0a1b2c3d", f".state.safetensors.{dead.pid}.tmp",
             f".m.tbm.tmp-{dead.pid}", f".m.tbm.tmp-{os.getpid()}-00ff00ff", "m.tbm", ".hidden"]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / f".train.tmp-{dead.pid}-deadbeef").mkdir()
    removed = fileio.sweep_temps(tmp_path)
    assert len(removed) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f".m.tbm.tmp-{os.getpid()}-00ff00ff", "m.tbm", ".hidden"])


def test_lock_is_reentrant_and_removed_on_release(tmp_path):
    with fileio.dir_lock(tmp_path):
        assert (tmp_path / fileio.LOCK_FILE).read_text() == f"{os.getpid()}\n"
        with fileio.dir_lock(tmp_path):
            pass
        assert (tmp_path / fileio.LOCK_FILE).exists()
    assert not (tmp_path / fileio.LOCK_FILE).exists()


def test_second_writer_is_refused_with_the_holders_pid_both_orders(tmp_path):
    child = _holder(tmp_path)  # another process first: we are refused
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"in use by another tokenbound process "
                                            f"\\(pid {child.pid}\\)"):
            with fileio.dir_lock(tmp_path):
                pass
    finally:
        child.kill()
        child.wait()
    with fileio.dir_lock(tmp_path):  # we first: the other process is refused
        late = _holder(tmp_path, 0)
        out, _ = late.communicate(timeout=30)
        assert late.returncode == 2 and f"(pid {os.getpid()})" in out


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    child = _holder(tmp_path)
    assert child.stdout.readline().strip() == "held"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert (tmp_path / fileio.LOCK_FILE).read_text() == f"{child.pid}\n"  # left behind
    with fileio.dir_lock(tmp_path):
        assert (tmp_path / fileio.LOCK_FILE).read_text() == f"{os.getpid()}\n"


def test_simultaneous_writers_exactly_one_wins(tmp_path):
    procs = [_holder(tmp_path, 2.0) for _ in range(3)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert sorted(p.returncode for p in procs) == [0, 2, 2], outs
    assert sum(o.startswith("held") for o in outs) == 1


def test_file_lock_sweeps_its_own_temporaries(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".m.tbm.tmp-{dead.pid}").write_bytes(b"x" * 10)
    (tmp_path / f".other.tmp-{dead.pid}").write_bytes(b"x")
    with fileio.file_lock(tmp_path / "m.tbm"):
        assert (tmp_path / ".m.tbm.lock").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".other.tmp-{dead.pid}"]


def test_refresh_keeps_a_file_it_cannot_rewrite(tmp_path, monkeypatch):
    p = tmp_path / "r.json"
    assert fileio.refresh_text(p, "a\n") is True
    mtime = p.stat().st_mtime_ns
    time.sleep(0.01)
    assert fileio.refresh_text(p, "a\n") is False and p.stat().st_mtime_ns == mtime

    def read_only(path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(fileio, "temp_name", read_only)
    assert fileio.refresh_text(p, "b\n") is False and p.read_text() == "a\n"
    with pytest.raises(PermissionError):
        fileio.refresh_text(tmp_path / "new.json", "b\n")
