"""Writes that fail: every library says "disk full" its own way (OSError, safetensors'
SafetensorError, tokenizers' plain Exception, torch.save's RuntimeError). One place tells a
failed write from a bug, and makes every process of a launched run stop on it together; and
one place writes a file or folder whole (under a temporary name, then renamed).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


class WriteFailed(Exception):
    """A library could not write a file (disk full, I/O error); `cause` is its words, cut."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


# torch's zip serializer (torch.save) reports a failed write as a RuntimeError with these words
_TORCH_WRITE = ("PytorchStreamWriter", "file write failed", "inline_container.cc")
# Rust libraries (safetensors, tokenizers) format std::io::Error as "... (os error 28)"
_RUST_IO = re.compile(r"\(os error \d+\)|I/O error|IoError")


def write_failure(err: BaseException) -> str | None:
    """The cause, cut to one short line, when `err` is a failed write; None for anything else
    (ftkit's own bugs must not pass for a full disk). Call it only around write calls."""
    if isinstance(err, OSError):
        return short(err.strerror or str(err) or type(err).__name__)
    text = str(err)
    if _RUST_IO.search(text):  # SafetensorError, tokenizers' plain Exception
        return short(text.removeprefix("Error while serializing: "))
    if isinstance(err, RuntimeError) and any(words in text for words in _TORCH_WRITE):
        return short(f"torch.save failed, a full disk or an I/O error: {text}")
    return None


def together(accelerator: Any, write: Callable[[], Any] | None) -> None:
    """Run `write` on this process (None: nothing to write here); if it fails in any process,
    every process raises, so none waits forever at the next barrier.

    A failed write is WriteFailed(cause); any other error is re-raised as it is.
    """
    error: Exception | None = None
    if write is not None:
        try:
            write()
        except Exception as err:  # noqa: BLE001 - sorted below: a write failure or a bug
            error = err
    if accelerator.num_processes > 1:
        import torch

        failed = accelerator.reduce(torch.tensor(float(error is not None), device=accelerator.device), reduction="sum")
        if error is None and failed.item() > 0:
            raise WriteFailed("another process failed; see its error")
    if error is not None:
        cause = write_failure(error)
        if cause is None:
            raise error
        raise WriteFailed(cause) from error


def short(text: str, limit: int = 200) -> str:
    """A library's message on one line, cut to `limit` characters."""
    from ftkit.bounded import cut

    return cut(" ".join(text.split()), limit)


def replace_whole(path: Path, fill: Callable[[Path], Any], tmp: Path | None = None) -> None:
    """`fill(tmp)` writes a file or a folder under a temporary name beside `path`, which is then
    renamed over `path`: a reader, or a kill at any moment, never sees half of it, and a failed
    fill (a full disk, Ctrl-C) leaves no temporary behind.

    `tmp` None: `path` is a file, and `fill` overwrites a fresh empty one that mkstemp made
    beside it (`fresh_file`): a name nobody else holds, so no file of the user's is ever cleared
    and no planted link is written through. A folder's caller passes its own `tmp`
    (`run_tmp` inside a folder ftkit owns).
    """
    if tmp is None:
        tmp = fresh_file(path)
    try:
        fill(tmp)
        if tmp.is_dir() and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)  # os.replace renames a folder only over an empty one
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # the failure to report is the write's, not the cleanup's
            remove(tmp)
        raise


def replace_text(path: Path, text: str) -> None:
    """`path` holds `text` (UTF-8), written whole under a fresh temporary name (see replace_whole)."""
    replace_whole(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


# What fresh_file's names end with: a kill mid-write leaves `.NAME.<random>.ftkit-tmp`, which
# ftkit recognises as its own (runfiles.is_run_file) and nobody else's file is called.
FRESH_SUFFIX = ".ftkit-tmp"


def fresh_file(path: Path) -> Path:
    """A new empty file beside `path` (`.NAME.<random>.ftkit-tmp`), readable as a new file is
    made under the umask (mkstemp makes it private): the temporary of a whole-file write."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=FRESH_SUFFIX, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)
    return Path(name)


def fresh_of(name: str) -> str | None:
    """The NAME a fresh_file leftover `.NAME.<random>.ftkit-tmp` was written for, else None."""
    if not (name.startswith(".") and name.endswith(FRESH_SUFFIX)):
        return None
    stem = name[1 : -len(FRESH_SUFFIX)]
    return stem.rsplit(".", 1)[0] if "." in stem else None


def run_tmp(path: Path) -> Path:
    """`path.tmp`, cleared: the temporary name of a folder written whole inside a folder ftkit
    owns (the run folder, checkpoints/), where a kill's leftover under that name is ftkit's own
    (--overwrite knows it: runfiles.is_run_file). Never for a user's folder: it clears the name."""
    tmp = path.with_name(path.name + ".tmp")
    remove(tmp)
    return tmp


def remove(path: Path) -> None:
    """Remove a file, a link (never what it points to) or a folder, if there."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path)
