"""Where `ftkit predict` writes: stdout, a device or pipe, or an --output FILE that is held
locked for the whole predict, replaced only when asked, and continued only for the same input.

Beside an output file a small record, `.NAME.ftkit-predict.json`, says what the file holds. It
is rewritten (atomically) before each chunk of lines is appended, with two points: where the
file stood before the chunk and where it stands with it. A point is the count of source records
and the sha256 of them, and the output's length and the sha256 of those bytes. `--resume` keeps
the latest point the file really reaches, so a kill at any instant costs at most the chunk being
written, and it goes on only when the first COUNT records of this input digest to the recorded
value, with the same model and options. The record is removed once predict completes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ftkit import fsguard
from ftkit.errors import FtkitError
from ftkit.writes import replace_text

STATE_VERSION = 1
STATE_MAX_BYTES = 1 << 16  # the record is a few hundred bytes: a larger file is not one of ours
HASH_BLOCK = 1 << 20


def state_path(output: Path) -> Path:
    """The record beside an output file of predict."""
    return output.with_name(f".{output.name}.ftkit-predict.json")


def _record_bytes(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8") + b"\n"


class Ledger:
    """Running sha256 digests of the source records predicted so far and of the bytes written."""

    def __init__(self, records: Any = None, output: Any = None, count: int = 0, size: int = 0) -> None:
        self.records = hashlib.sha256() if records is None else records
        self.output = hashlib.sha256() if output is None else output
        self.count, self.size = count, size

    def add(self, records: list[dict[str, Any]], data: bytes = b"") -> None:
        for record in records:
            self.records.update(_record_bytes(record))
        self.count += len(records)
        self.output.update(data)
        self.size += len(data)

    def copy(self) -> Ledger:
        return Ledger(self.records.copy(), self.output.copy(), self.count, self.size)

    def point(self) -> dict[str, Any]:
        return {"count": self.count, "records_sha256": self.records.hexdigest(), "bytes": self.size, "output_sha256": self.output.hexdigest()}


class StreamSink:
    """stdout, or a device or pipe given as --output (opened at the first line and written in
    place); with neither handle nor path, a process that computes without writing."""

    def __init__(self, handle: IO[str] | None, name: str = "stdout", path: Path | None = None) -> None:
        self.handle, self.name, self.path, self.count = handle, name, path, 0

    def __enter__(self) -> StreamSink:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.path is not None and self.handle is not None:
            with contextlib.suppress(OSError):
                self.handle.close()

    def check(self, records: Iterator[dict[str, Any]], source: str) -> int:
        return 0  # nothing to keep: --resume needs an output file (refused before this)

    def write(self, records: list[dict[str, Any]], text: str) -> None:
        with _io(self.path, "write") if self.path else contextlib.nullcontext():  # stdout's errors stay its own
            if self.handle is None and self.path is not None:  # a FIFO's open waits for a reader: only now
                self.handle = open(self.path, "w", encoding="utf-8", newline="\n")  # noqa: SIM115
            if self.handle is not None:
                self.handle.write(text)
                self.handle.flush()
        self.count += len(records)

    def finish(self) -> None:
        self.write([], "")  # no input at all: the output file is still opened (and left empty)

    def interrupted(self) -> str:
        if not self.count:
            return "interrupted before any prediction was written; nothing changed"
        return (f"interrupted: {self.count:,} predictions were written to {self.name}; rerun to predict them all "
                "(only an --output FILE can be continued with --resume)")

    def kept(self) -> str:
        return ""


class OutputFile:
    """predict's --output FILE: locked from before the model loads to the end; a file that was
    there is left as it was until the first prediction is ready; on failure, what this predict
    created is removed and a prefix it wrote stays, with its record, for --resume."""

    def __init__(self, path: Path, producer: dict[str, Any], overwrite: bool = False, resume: bool = False) -> None:
        self.path, self.producer, self.overwrite, self.resume = path, producer, overwrite, resume
        self.state = state_path(path)
        self.ledger = Ledger()
        self.created = False
        self._fd: int | None = None  # opened for writing with the first prediction
        self._lock = contextlib.ExitStack()

    @property
    def count(self) -> int:
        return self.ledger.count

    def __enter__(self) -> OutputFile:
        with _io(self.path, "write"):
            self.created = _create(self.path)
            # Refused here (another predict writes it), nothing is removed: that process owns the file.
            self._lock.enter_context(fsguard.locked(self.path, "this predictions file"))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            if self._fd is not None:
                os.close(self._fd)
            if exc_type is not None and self.created and not self.count:  # nothing of value: leave no trace
                for path in (self.state, self.path):
                    with contextlib.suppress(OSError):
                        path.unlink(missing_ok=True)
        finally:
            self._lock.close()

    def check(self, records: Iterator[dict[str, Any]], source: str) -> int:
        """Before the model loads: may this file be written, and how many of `records` does it keep?
        With --resume, the records it keeps are read from `records` (and checked)."""
        if self.created or self.path.stat().st_size == 0:
            return 0  # nothing there to lose, nothing to keep
        if self.resume:
            return self._resume(records, source)
        if self.overwrite:
            return 0
        if _read_state(self.state) is not None:
            raise FtkitError(
                f"{self.path}: holds the predictions of an interrupted ftkit predict; continue them with --resume, "
                "or start over with --overwrite"
            )
        refuse_replacing(self.path)
        return 0

    def _resume(self, records: Iterator[dict[str, Any]], source: str) -> int:
        state = _read_state(self.state)
        again = "start over with --overwrite, or choose another --output"
        if state is None:
            raise FtkitError(f"{self.path}: not the partial output of an interrupted ftkit predict (no {self.state.name} beside it), so --resume cannot tell what it holds; {again}")
        differs = sorted(k for k in set(state["producer"]) | set(self.producer) if state["producer"].get(k) != self.producer.get(k))
        if differs:
            raise FtkitError(f"{self.path}: was written with another model or other options (differs: {', '.join(differs)}); resume with the same ones, or {again}")
        with _io(self.path, "read"):
            reached = self._reached(state["points"])
        if reached is None:
            raise FtkitError(f"{self.path}: changed since ftkit predict wrote it (its lines are not the ones recorded in {self.state.name}); {again}")
        point, output = reached
        seen = Ledger(output=output, size=point["bytes"])
        seen.add(list(itertools.islice(records, point["count"])))
        if seen.count < point["count"]:
            raise FtkitError(f"{self.path}: holds {point['count']} predictions but {source} has only {seen.count} inputs: it was written for another input; {again}")
        if seen.records.hexdigest() != point["records_sha256"]:
            raise FtkitError(f"{self.path}: was written for another input (the first {point['count']} inputs of {source} are not the ones it holds predictions for); {again}")
        self.ledger = seen
        return seen.count

    def _reached(self, points: list[dict[str, Any]]) -> tuple[dict[str, Any], Any] | None:
        """The latest recorded point whose bytes the file holds, with the running digest there."""
        size = self.path.stat().st_size
        digest, done, best = hashlib.sha256(), 0, None
        with open(self.path, "rb") as handle:
            for point in sorted(points, key=lambda p: p["bytes"]):
                if point["bytes"] > size:
                    break
                while done < point["bytes"]:
                    block = handle.read(min(HASH_BLOCK, point["bytes"] - done))
                    if not block:  # shorter than it was a moment ago: it is changing under us
                        return best
                    digest.update(block)
                    done += len(block)
                if digest.hexdigest() == point["output_sha256"]:
                    best = (point, digest.copy())
        return best

    def write(self, records: list[dict[str, Any]], text: str) -> None:
        """Append one chunk's lines: the record of both points first, then the bytes."""
        data = text.encode("utf-8")
        with _io(self.path, "write"):
            if self._fd is None:
                self._open()
            ahead = self.ledger.copy()
            ahead.add(records, data)
            self._save_state([self.ledger.point(), ahead.point()])
            view = memoryview(data)
            while view:  # one write() for a regular file; the loop covers a short write
                view = view[os.write(self._fd, view) :]
        self.ledger = ahead

    def finish(self) -> None:
        """Predict completed: the file holds every prediction (a resumed one that had nothing left
        is cut to its recorded length); the record is no longer needed."""
        with _io(self.path, "write"):
            if self._fd is None:
                self._open()
            self.state.unlink(missing_ok=True)

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY)
        os.ftruncate(self._fd, self.ledger.size)  # drops what follows the kept point (a cut line, a lost chunk)
        os.lseek(self._fd, 0, os.SEEK_END)

    def _save_state(self, points: list[dict[str, Any]]) -> None:
        replace_text(self.state, json.dumps({"version": STATE_VERSION, "producer": self.producer, "points": points}))

    def interrupted(self) -> str:
        if not self.count:
            return "interrupted before any prediction was written; nothing changed"
        return f"interrupted: {self.count:,} predictions are in {self.path}; run the same command with --resume to predict the rest"

    def kept(self) -> str:
        """What a failure leaves, as the end of its error line."""
        if not self.count:
            return ""
        return f"; {self.count:,} predictions are kept in {self.path} (fix the cause, then add --resume to continue)"


@contextlib.contextmanager
def _io(path: Path | str, doing: str) -> Iterator[None]:
    """An OSError on the output (disk full, no permission, I/O error) as one line naming it."""
    try:
        yield
    except OSError as err:
        hint = "free space or choose another --output" if err.errno == errno.ENOSPC else "choose another --output"
        raise FtkitError(f"{path}: cannot {doing} ({err.strerror or err}); {hint}") from None


def _create(path: Path) -> bool:
    """Create `path` if it is missing (so it can be locked); whether this call created it."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except FileExistsError:
        return False
    return True


def _read_state(path: Path) -> dict[str, Any] | None:
    """The record beside an output, or None when there is none that this version of ftkit wrote."""
    try:
        if path.stat().st_size > STATE_MAX_BYTES:
            return None
        state = json.loads(path.read_text(encoding="utf-8"))
        points = state["points"]
        ok = (state.get("version") == STATE_VERSION and isinstance(state.get("producer"), dict) and isinstance(points, list)
              and all(isinstance(p, dict) and _natural(p.get("count")) and _natural(p.get("bytes"))
                      and isinstance(p.get("records_sha256"), str) and isinstance(p.get("output_sha256"), str) for p in points))
        return state if ok else None
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _natural(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def sink_for(output: Path | None, main: bool, producer: dict[str, Any], overwrite: bool, resume: bool) -> StreamSink | OutputFile:
    """Where this process writes: nothing (launched, not the main process), stdout, a device or
    pipe in place, or a regular file through OutputFile."""
    if not main:
        return StreamSink(None)
    if output is None:
        return StreamSink(sys.stdout)
    if is_stream(output):
        return StreamSink(None, str(output), path=output)
    return OutputFile(output, producer, overwrite=overwrite, resume=resume)


def refuse_replacing(path: Path) -> None:
    """An existing file that is not empty is replaced only with --overwrite: it may be anything."""
    if path.is_file() and path.stat().st_size > 0:
        raise FtkitError(f"{path}: already exists; pass --overwrite to replace it, or choose another --output")


def is_stream(path: Path) -> bool:
    """A device or pipe (not a regular file, not a folder): written in place, never replaced."""
    return path.exists() and not path.is_file() and not path.is_dir()
