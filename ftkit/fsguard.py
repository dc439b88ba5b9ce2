"""Guards for the files a user owns: no command writes over what it reads, and one process at a
time writes a run folder or an output file.

Locks are advisory `flock` locks on an open file descriptor: the kernel drops them when the
process dies (kill -9 included), so a crashed run never blocks the next command.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ftkit.errors import FtkitError

PROBE_SUFFIX = ".ftkit-write-test"  # the write probe's name ends so


def same_file(a: Path | str, b: Path | str) -> bool:
    """Whether two spellings name one file: the same inode (hard links, symlinks, `./x` vs `x`),
    or, for paths that do not exist yet, the same resolved path."""
    a, b = Path(a), Path(b)
    with contextlib.suppress(OSError):
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # a symlink loop names no file we could write
        return False


def refuse_overlap(output: Path, inputs: Iterable[Path | str], flag: str) -> None:
    """Refuse an output that is one of the command's inputs: writing it would destroy the input."""
    for source in inputs:
        if str(source) != "-" and same_file(output, source):
            raise FtkitError(
                f"{flag} {output} is the input file {source}: writing it would destroy the input. "
                f"Choose another {flag}"
            )


@contextlib.contextmanager
def locked(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `path` (a folder or an existing file) for the block.

    A second ftkit process asking for the same lock is refused at once (exit 2), naming `what`.
    Where flock is missing (Windows) or unsupported (some network file systems), no lock is held.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock; one process per folder is then the user's care
        yield
        return
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    fd = os.open(path, flags)
    busy = FtkitError(f"{path}: another ftkit process is writing {what} right now; wait for it to finish, or choose another output")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise busy from None
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
        # Removed or replaced between open and flock (the process that held it cleaned up after
        # a failure): a lock on what `path` no longer names would guard nothing.
        if not _names(path, fd):
            raise busy
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _names(path: Path, fd: int) -> bool:
    """Whether `path` still names the file or folder open as `fd`."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(fd))
    except OSError:
        return False


def probe_writable(folder: Path) -> None:
    """Write a few bytes in `folder` (a full disk still lets an empty file be made) under a fresh
    name: O_EXCL, so no file or link already there (a tampered probe) is ever written through."""
    fd, name = tempfile.mkstemp(prefix=".", suffix=PROBE_SUFFIX, dir=folder)
    probe = Path(name)
    try:
        os.close(fd)
        probe.write_text("ok")
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
