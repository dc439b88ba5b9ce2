"""A data file before a record of it is read: what the path is, and which codec reads its text.

ftkit reads a data file more than once (its first record to fit the columns, then all of it, and
again to name a line that does not decode), so only a regular file is data: a named pipe would
hang the first read (and be empty at the second), a device never ends. Every check here runs
before any model loads, and none of them blocks: the kind of a path comes from stat(), and the
read probe opens non-blocking.
"""

from __future__ import annotations

import codecs
import errno
import os
import stat
from pathlib import Path

from ftkit.errors import FtkitError

TABLE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet")
TEXT_SUFFIXES = (".txt",)
CONLL_SUFFIXES = (".conll", ".iob")  # token per line, tag last; also .txt with --format conll
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")  # clips soundfile reads (speech recognition)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")  # images PIL reads (image classification)
MEDIA_SUFFIXES = AUDIO_SUFFIXES + IMAGE_SUFFIXES  # files `predict` takes one by one, read by the run's family

# What a path is when it is not a regular file (the folder has its own message).
_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)
# Byte-order marks, UTF-32 first: its little-endian mark begins with UTF-16's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# (encoding, byte positions mod 4 that are NUL, the least share of NULs there, positions that are
# almost never NUL). The high bytes of UTF-32 are 0 for every letter below U+10000; UTF-16's only
# for Latin letters, digits and punctuation, so a lower share suffices.
_WIDE = (
    ("utf-32-le", (2, 3), 0.95, (0,)),
    ("utf-32-be", (0, 1), 0.95, (3,)),
    ("utf-16-le", (1, 3), 0.3, (0, 2)),
    ("utf-16-be", (0, 2), 0.3, (1, 3)),
)
SNIFF_BYTES = 4096  # how much of a file the encoding check looks at


def check_readable(path: Path, suffixes: tuple[str, ...] = TABLE_SUFFIXES) -> None:
    """Fail early (before any model loads) on a path that is not a readable data file.

    In order: no such file (or a broken or looping symbolic link), a folder, a pipe, socket or
    device, an unknown extension, no permission to read.
    """
    info = _stat(path)
    if stat.S_ISDIR(info.st_mode):
        raise FtkitError(f"{path}: is a folder; pass a data file ({', '.join(suffixes)})")
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "a special file")
        raise FtkitError(
            f"{path}: is {kind}, not a regular file: ftkit reads a data file several times; save the data to a "
            "file first (ftkit predict also reads standard input: pass -)"
        )
    _check_suffix(path, suffixes)
    _probe(path)


def _stat(path: Path) -> os.stat_result:
    """stat() of the file a path leads to, or the one-line reason there is none."""
    try:
        return path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise FtkitError(f"{path}: symbolic link loop (the link leads back to itself); point it at the data file") from None
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            if path.is_symlink():
                raise FtkitError(f"{path}: broken symbolic link to {os.readlink(path)} (no such file); point it at the data file") from None
            where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
            raise FtkitError(f"{path}: no such file{where}; check the path") from None
        if err.errno in (errno.EACCES, errno.EPERM):
            raise FtkitError(f"{path}: permission denied (a folder on its path cannot be searched); fix the permissions or copy the file") from None
        raise FtkitError(f"{path}: cannot read it ({err.strerror or err}); check the path") from None


def _check_suffix(path: Path, suffixes: tuple[str, ...]) -> None:
    if path.suffix.lower() in TEXT_SUFFIXES and path.suffix.lower() not in suffixes:
        # .txt says nothing about its layout: only a --format that does makes it data
        raise FtkitError(
            f"{path}: unknown extension '{path.suffix}' without a format; pass --format conll (token ... tag "
            f"per line) or --format text (documents separated by blank lines), or use one of {', '.join(suffixes)}"
        )
    if path.suffix.lower() not in suffixes:
        raise FtkitError(
            f"{path}: unknown extension '{path.suffix}'; use one of {', '.join(suffixes)} "
            "(rename the file if its content is one of these)"
        )


def _probe(path: Path) -> None:
    """Open the file for reading once: only the kernel knows (root reads despite mode bits, ACLs
    and read-only mounts differ). Non-blocking, in case a pipe took the file's place since stat()."""
    try:
        os.close(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)))
    except OSError as err:
        if err.errno in (errno.EACCES, errno.EPERM):
            raise FtkitError(f"{path}: permission denied: ftkit cannot read it; allow reading (chmod u+r) or copy it somewhere readable") from None
        raise FtkitError(f"{path}: cannot open it ({err.strerror or err}); check the file") from None


def text_codec(path: Path, encoding: str) -> str:
    """The codec that reads a text data file given --encoding.

    A byte-order mark names a Unicode encoding for certain, so with a UTF encoding asked for it
    wins (UTF-16 exported by Excel or PowerShell reads as it is). Without a mark, UTF-16/32 is
    only a guess from where the NUL bytes fall: refused with the --encoding to pass, since a
    wrong guess would train on garbage. An explicit non-UTF encoding (latin-1) is the user's word.
    """
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise FtkitError(f"unknown encoding '{encoding}': pass another --encoding (e.g. utf-8, latin-1, cp1252)") from None
    if not name.startswith("utf"):
        return encoding
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec
    if name == "utf-8":
        wide = _wide_unicode(head)
        if wide:
            raise FtkitError(
                f"{path}: looks like {wide.upper()} text without a byte-order mark (NUL bytes between the letters); "
                f"pass --encoding {wide} (or re-save it as UTF-8)"
            )
    return encoding


def _wide_unicode(head: bytes) -> str | None:
    """'utf-16-le' (etc.) when the NUL bytes of `head` fall where UTF-16/32 puts them.

    In mostly-Latin text every character's high bytes are 0: UTF-16-LE zeroes the odd bytes,
    UTF-32-LE three of every four. UTF-8 text never holds a NUL byte, so these patterns do not
    occur by chance in it.
    """
    n = len(head) - len(head) % 4
    if n < 4 or 0 not in head[:n]:
        return None
    share = [head[i:n:4].count(0) / (n // 4) for i in range(4)]
    return next(
        (name for name, zero, floor, other in _WIDE if min(share[i] for i in zero) >= floor and max(share[i] for i in other) <= 0.05),
        None,
    )
