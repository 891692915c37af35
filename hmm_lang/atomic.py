"""Write artifacts so that a crash never leaves a half-written file or folder behind.

Files are written to a temporary name in the same folder and renamed into place (rename is
atomic on POSIX); folders are built under a temporary name and renamed when complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def _stale(tmp: Path) -> bool:
    """Whether a temporary ``.<name>.<host>-<pid>.<random>.tmp`` was left by a process that is
    gone (a live writer's is not stale: two processes may build the same artifact at once). A
    writer on another host (a shared filesystem) cannot be checked, so its folder is kept."""
    owner = tmp.name.split(".")[-3] if tmp.name.count(".") >= 3 else ""
    host, _, pid_text = owner.rpartition("-")
    if host and host != _host():
        return False
    try:
        pid = int(pid_text)
    except ValueError:
        return True  # an older naming scheme: no writer to protect
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _prefix(path: Path) -> str:
    return f".{path.name}.{_host()}-{os.getpid()}."


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed writer
        if stale.is_file() and _stale(stale):
            stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except RuntimeError as e:  # torch.save reports a full disk as a RuntimeError
        if shutil.disk_usage(path.parent).free < (64 << 20):
            import errno

            raise OSError(errno.ENOSPC, "No space left on device", str(path)) from e
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        at_fdcwd, rename_exchange = -100, 2
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def sweep_stale(path: str | os.PathLike) -> None:
    """Remove the temporary folders that a killed writer of ``path`` left beside it (a live
    writer's are kept). Called before each write, and where an existing ``path`` is reused
    without writing, so that leftovers do not wait for the next rewrite."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        if _stale(stale):
            shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, keep_existing: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder; it replaces ``path`` only when the block succeeds.

    An existing ``path`` is swapped out in one atomic exchange where the OS allows it (else
    renamed aside first), and deleted only once the new folder is in place: a kill at any
    moment leaves either the old folder or the new one. Temporary folders that a killed
    writer left next to ``path`` are removed first. ``keep_existing`` (for content-addressed
    caches, where two writers build the same thing): if ``path`` exists when the block ends,
    another writer got there first; its folder is kept and ours discarded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if keep_existing:
            try:
                os.rename(tmp, path)  # fails when path exists (a non-empty folder)
            except OSError:
                if not path.is_dir():
                    raise
            return
        if not (path.exists() and _exchange(tmp, path)):  # exchanged: tmp holds the old one
            aside = None
            if path.exists():
                aside = tempfile.mkdtemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent)
                os.replace(path, Path(aside) / "old")
            os.replace(tmp, path)
            if aside is not None:
                shutil.rmtree(aside)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_yaml(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, yaml.safe_dump(obj, sort_keys=False))
