"""Files: atomic writes, sha256 of files and directories, stale temporaries, directory locks.

The one home of these (every package may import it, like `tokenbound.errors`).

Atomic write: the data goes to a temporary `.NAME.tmp-<pid>-<hex>` in the destination's
directory, is flushed and fsynced, renamed over `NAME` (the commit point) and the directory is
fsynced; on any failure (a full disk included) the temporary is removed and `NAME` is left as
it was. A process killed mid-write leaves its temporary behind; `sweep_temps(dir)` (called when
a command takes a directory's lock) removes those of processes that are no longer alive.

Directory lock: `dir_lock(DIR)` holds `fcntl.flock` on `DIR/.tokenbound.lock` (the file holds
the holder's pid) for the duration of a command that writes DIR; a second writer gets a one-line
`UserError` naming that pid. The kernel drops the lock when its process dies, so a lock left by a
killed process is taken over. Locks are re-entrant within one process. A directory that cannot
hold a lock file (read-only) is used unlocked: nothing can write there anyway.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from tokenbound.errors import UserError

log = logging.getLogger(__name__)

LOCK_FILE = ".tokenbound.lock"
_TEMP = re.compile(r"^\.(.+)\.(?:tmp|old)-(\d+)-[0-9a-f]+$")  # temp_name (and set-aside dirs)
_LEGACY_TEMP = re.compile(r"^\.(.+)\.(\d+)\.tmp$")           # old checkpoint temporaries
_OLD_TEMP = re.compile(r"^\.(.+)\.tmp-(\d+)$")              # old message/JSON temporaries
_HELD: dict[str, list] = {}                                 # lock path -> [fd, depth]
READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)       # what writing a read-only dir raises


# ---- hashing ----------------------------------------------------------------------------------
def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes, read in chunks of `chunk` bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def dir_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 over (relative name, file sha256) of every file under `path`, sorted."""
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(path)):  # roots in string order (recorded hashes)
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            h.update(f"{os.path.relpath(full, path)}\0{file_sha256(full)}\n".encode())
    return h.hexdigest()


def files_bytes(path: str | os.PathLike) -> int:
    """Size of a file, or the total size of every file under a directory."""
    p = Path(path)
    return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*")
                                                    if f.is_file())


# ---- atomic writes ----------------------------------------------------------------------------
def temp_name(path: str | os.PathLike) -> Path:
    """A fresh temporary name beside `path`: `.NAME.tmp-<pid>-<8 hex>` (swept when stale)."""
    p = Path(path)
    return p.with_name(f".{p.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory (makes a rename in it durable); a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` for a writer that takes a file name; on a clean
    exit it is fsynced and renamed to `path`, on any error removed. UserError when `path` is a
    directory; a full disk is reported naming `path` (`disk_error`)."""
    dest = Path(path)
    if dest.is_dir():
        raise UserError(f"{dest} is a directory; give a file name (e.g. {dest / 'out'})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(dest)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_error(dest, exc) from exc
        raise
    fsync_dir(dest.parent)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kw) -> Iterator[IO]:
    """`open` of a temporary beside `path` ("wb" or "w"), renamed to `path` on a clean exit."""
    with atomic_path(path) as tmp, open(tmp, mode, **kw) as f:
        yield f
        f.flush()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see the module docstring)."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 `text` to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2,
                      sort_keys: bool = False, default=None) -> None:
    """`json.dumps(obj, indent, sort_keys, default)` plus a newline, written atomically."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default)
    atomic_write_text(path, text + "\n")


def write_if_changed(path: str | os.PathLike, text: str) -> bool:
    """Write `text` atomically unless `path` already holds exactly it (so a finished,
    read-only directory is left alone); True when it wrote."""
    p = Path(path)
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if p.is_file() and p.read_text(encoding="utf-8") == text:
            return False
    atomic_write_text(p, text)
    return True


def refresh_text(path: str | os.PathLike, text: str) -> bool:
    """`write_if_changed`, except that an existing `path` in a read-only directory is kept
    (logged) instead of failing: for files a rerun of finished work only refreshes."""
    try:
        return write_if_changed(path, text)
    except OSError as exc:
        if exc.errno not in READ_ONLY or not Path(path).is_file():
            raise
        log.warning("could not refresh %s (%s); keeping it", path, exc.strerror)
        return False


def disk_error(path: str | os.PathLike, exc: OSError) -> UserError:
    """The one-line error of a full disk while writing `path`."""
    return UserError(f"no space left on the device while writing {path} ({exc.strerror or exc}); "
                     "free some space there (or choose another output directory) and rerun "
                     "the same command")


# ---- stale temporaries ------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_temps(directory: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove temporaries (files or directories named by `temp_name`, `.NAME.old-<pid>-<hex>`,
    or the older `.NAME.<pid>.tmp` and `.NAME.tmp-<pid>`) of processes that are not alive from
    `directory` (only those of NAME == `name` when given); returns them."""
    d = Path(directory)
    removed = []
    with contextlib.suppress(OSError):
        for p in d.iterdir():
            m = _TEMP.match(p.name) or _LEGACY_TEMP.match(p.name) or _OLD_TEMP.match(p.name)
            if (m is None or (name is not None and m.group(1) != name)
                    or _pid_alive(int(m.group(2)))):
                continue
            log.info("removing a temporary left by a stopped process: %s", p)
            with contextlib.suppress(OSError):
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
                removed.append(p)
    return removed


# ---- locks ----------------------------------------------------------------------------------
@contextlib.contextmanager
def dir_lock(directory: str | os.PathLike, what: str = "--out") -> Iterator[None]:
    """Hold the exclusive lock of `directory` (created if missing) while the block runs, and
    sweep stale temporaries from it (and its ckpt/, shards/) once held. A second holder gets a
    UserError naming the first's pid; `what` names the option that chose the directory."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    with _locked(d / LOCK_FILE, f"{what} {d}") as held:
        if held:
            for sub in (d, d / "ckpt", d / "shards"):
                sweep_temps(sub)
        yield


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, what: str = "--out") -> Iterator[None]:
    """`dir_lock` for one output file: the lock is `.NAME.lock` beside it, and the stale
    temporaries swept are NAME's."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with _locked(p.with_name(f".{p.name}.lock"), f"{what} {p}") as held:
        if held:
            sweep_temps(p.parent, p.name)
        yield


@contextlib.contextmanager
def _locked(lock_file: Path, label: str) -> Iterator[bool]:
    """flock `lock_file` (re-entrant in this process); yields False when it cannot exist
    (a read-only directory); unlinks it on release."""
    key = os.path.realpath(lock_file)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield True
        finally:
            _HELD[key][1] -= 1
        return
    fd = _acquire(key, label)
    if fd is not None:
        _HELD[key] = [fd, 1]
    try:
        yield fd is not None
    finally:
        if fd is not None:
            del _HELD[key]
            with contextlib.suppress(OSError):
                os.unlink(key)
            os.close(fd)  # closing drops the flock


def _acquire(key: str, label: str) -> int | None:
    """Open and flock `key`, checking that the file locked is still the one at `key` (a
    releasing holder unlinks it); None when the directory cannot hold a lock file."""
    while True:
        try:
            fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno in READ_ONLY:
                log.info("%s is not writable; proceeding without its lock", label)
                return None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            holder = f"pid {pid}" if pid else "another process"
            raise UserError(f"{label} is in use by another tokenbound process ({holder}); "
                            "wait for it to finish or choose another output") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(key).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    return None
