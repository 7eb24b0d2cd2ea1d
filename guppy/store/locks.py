"""`output_lock`: one process at a time writes an output; a second one gets one line, exit 2.

The lock is the kernel's (flock on `.NAME.lock` beside the output), so it goes away with the process
that held it; a process may nest its own locks (train's checkpoint inside train's run).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from guppy.errors import GuppyError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; everything else still holds
    fcntl = None


def cannot_write(target: Path, e: OSError) -> GuppyError:
    """An OSError while writing `target` as one line: which path and why (disk full, read-only, ...)."""
    where = Path(e.filename) if e.filename else Path(target)
    also = "" if where == Path(target) else f" (writing {target})"
    return GuppyError(f"{where}: cannot write here{also}: {e.strerror or e}; choose another output or free the path")


_held: dict[str, tuple[int, int]] = {}  # lock file -> (fd, depth): a process may nest its own locks


def _lock_file(target: Path) -> Path:
    target = Path(target).absolute()
    return target.with_name(f".{target.name}.lock")


@contextmanager
def output_lock(target: Path, *, enabled: bool = True) -> Iterator[None]:
    """Hold `target`'s lock for the block; a second process asking for it gets one line, exit 2.
    The lock is the kernel's (flock), so it goes away with the process that held it."""
    if not enabled or fcntl is None:
        yield
        return
    path = _lock_file(target)
    key = str(path)
    if key in _held:  # this process already holds it (train's checkpoint inside train's run)
        fd, depth = _held[key]
        _held[key] = (fd, depth + 1)
        try:
            yield
        finally:
            _held[key] = (fd, _held[key][1] - 1)
        return
    fd = _acquire(path, target)
    _held[key] = (fd, 1)
    try:
        yield
    finally:
        del _held[key]
        try:
            os.unlink(path)  # while still holding it: whoever opened it meanwhile sees it is gone, and retries
        except OSError:
            pass
        os.close(fd)


def _acquire(path: Path, target: Path) -> int:
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as e:
            raise cannot_write(Path(target), e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise GuppyError(f"{target}: another guppy process (pid {holder}) is writing it; wait for it to "
                             "finish or choose another output") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except OSError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)  # the holder removed it as we opened it: take the new one
