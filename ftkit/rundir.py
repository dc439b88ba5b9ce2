"""A run folder's life through one `ftkit finetune` / `reproduce`: what the user owns is never lost.

    RunFolder.new(out, overwrite, inputs)   up front, only checks: nothing is written (a probe
                                            file apart, removed at once); an existing folder is locked
    RunFolder.resume(out)                   --resume: the folder is locked, nothing else
    folder.accept()                         every input accepted (train.finetune calls it where it
                                            saves config.yaml): make OUT, or clear the earlier run in
                                            it, mark it as ftkit's and lock it
    with folder.lifetime(command): ...      holds the lock; a failure or Ctrl-C before the first
                                            checkpoint removes what this run made, and only that

Ownership is certain through a marker, `OUT/.ftkit-run.json`, the first file of every run folder:
`--overwrite` clears only a marked folder (or one written before the marker existed, see
`_legacy_run`) that holds nothing but run files. One process writes a folder at a time (a flock
on it, dropped by the kernel when the process dies).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ftkit import checkpoints, fsguard, runfiles
from ftkit.errors import FtkitError
from ftkit.writes import remove, replace_whole, run_tmp

NOT_STARTED = "interrupted before training started; nothing was saved"
# The write probe's name ends so (today's and older ftkit's): a leftover one is ftkit's litter.
PROBE_SUFFIX = fsguard.PROBE_SUFFIX


@dataclass
class Contents:
    """What a folder holds, leftover probes aside."""

    names: list[str]  # every entry, sorted
    foreign: list[str]  # entries no ftkit run writes
    marked: bool  # holds a valid .ftkit-run.json
    owned: bool  # marked, or a run written before the marker existed
    unfinished: bool  # a checkpoint to resume and no metrics.json


def survey(out: Path) -> Contents:
    names = sorted(p.name for p in out.iterdir() if not _probe_litter(p))
    foreign = [n for n in names if not runfiles.is_run_file(n)]
    marked = _marked(out)
    return Contents(
        names=names, foreign=foreign, marked=marked, owned=marked or _legacy_run(out),
        unfinished=checkpoints.latest(out) is not None and not (out / "metrics.json").exists(),
    )


def _marked(out: Path) -> bool:
    marker = out / runfiles.MARKER
    if marker.is_symlink() or not marker.is_file():
        return False
    try:
        with marker.open("rb") as handle:
            data = json.loads(handle.read(4096))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "ftkit" in data


def _legacy_run(out: Path) -> bool:
    """A run folder written before ftkit marked them. Decided: it counts as ftkit's when its
    config.yaml opens with the header only ftkit's save_config writes, and it holds a finished run
    (metrics.json with model/ or adapter/) or an unfinished one (a checkpoint). A lone config.yaml
    (what older versions left after a refused input) does not count: nothing of value proves the
    folder is a run, so --overwrite asks the user to move it rather than guess."""
    config = out / "config.yaml"
    if config.is_symlink() or not config.is_file():
        return False
    try:
        with config.open("rb") as handle:
            if handle.read(len(runfiles.CONFIG_HEADER)) != runfiles.CONFIG_HEADER.encode():
                return False
    except OSError:
        return False
    finished = (out / "metrics.json").is_file() and ((out / "model" / "config.json").is_file() or (out / "adapter").is_dir())
    return finished or checkpoints.latest(out) is not None


def refusal(out: Path, contents: Contents, overwrite: bool) -> str | None:
    """Why `out` may not take a new run (None: it may); --overwrite clears only an ftkit run."""
    if contents.names in ([], [runfiles.MARKER]):  # an empty folder, or an empty run folder
        return None
    if contents.foreign:
        what = "an ftkit run and other files" if contents.owned else "files that are not an ftkit run's"
        return (f"{out}: the folder is not empty: it holds {what} ({_few(contents.foreign)}); --overwrite clears only "
                "a folder holding nothing but an ftkit run: choose another --output-dir (or move those files)")
    if not contents.owned:
        return (f"{out}: the folder is not empty and not marked as an ftkit run (no {runfiles.MARKER}; it holds "
                f"{_few(contents.names)}); --overwrite removes only what ftkit wrote: choose another --output-dir (or move those files)")
    if overwrite:
        return None
    if contents.unfinished:
        return f"{out}: holds an unfinished run with checkpoints; add --resume to continue it, or --overwrite to start again"
    return f"{out}: the folder is not empty (it holds an earlier run); pass --overwrite to replace it, or another --output-dir"


def _few(names: list[str], shown: int = 3) -> str:
    """A few names, each cut: a folder may hold thousands of files with long names."""
    cut = [n if len(n) <= 30 else n[:27] + "..." for n in names[:shown]]
    return ", ".join(cut) + (f", ... ({len(names)} in all)" if len(names) > shown else "")


def check_writable(out: Path) -> None:
    """Refuse a place ftkit cannot write: probed in `out` or, not yet made, its nearest existing
    ancestor, leaving nothing behind."""
    place = next(p for p in (out.absolute(), *out.absolute().parents) if os.path.lexists(p))
    if not place.is_dir():
        raise FtkitError(f"{out}: {place} is a file, not a folder; choose another --output-dir")
    try:
        fsguard.probe_writable(place)
    except OSError as err:
        raise FtkitError(f"{out}: cannot write there ({err.strerror or err}); choose another --output-dir") from None


def _probe_litter(path: Path) -> bool:
    """A probe left by an older ftkit (or a killed one): removed when the run folder is made.
    A folder by that name is someone's, not a probe."""
    return path.name.endswith(PROBE_SUFFIX) and (path.is_symlink() or not path.is_dir())


def _refuse_inputs_inside(out: Path, inputs: Iterable[tuple[str, str]]) -> None:
    """--overwrite clears OUT once the inputs are read, but the model's weights load later:
    an input inside OUT (fine-tuning OUT/model again into OUT) would be deleted first."""
    for flag, path in inputs:
        if _inside(Path(path), out):
            raise FtkitError(f"{out}: --overwrite would delete {flag} {_few([path])}, an input of this run; "
                             "copy it out of the folder first, or choose another --output-dir")


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies under it (resolved: links and `..` count)."""
    try:
        path, folder = path.resolve(), folder.resolve()
    except (OSError, RuntimeError):
        return False
    return path == folder or folder in path.parents


class RunFolder:
    """One run folder through one command (on the main process; other processes get an inert one)."""

    def __init__(self, out: Path, writer: bool = True, overwrite: bool = False, resuming: bool = False) -> None:
        self.out = out
        self.writer = writer  # False on the other processes of a multi-process run: they touch nothing
        self.overwrite = overwrite
        self.resuming = resuming
        self.touched = False  # this process made OUT or wrote into it: its files are its own
        self.created: list[Path] = []  # folders this process made (parents first), OUT's own last
        self.marked_before = False
        self.finished = False
        self._locked = False
        self._stack = contextlib.ExitStack()  # the lock, held until the command ends

    @classmethod
    def new(cls, out: Path, overwrite: bool, inputs: Iterable[tuple[str, str]] = ()) -> RunFolder:
        """Check `out` for a new run: nothing is made or removed here. `inputs`: (flag, local path)."""
        folder = cls(out, overwrite=overwrite)
        try:
            if os.path.lexists(out) and not out.is_dir():
                raise FtkitError(f"{out}: is a file, not a folder; choose another --output-dir")
            if out.is_dir():
                folder._lock()  # first: a folder another run is writing is refused as such
            check_writable(out)
            if out.is_dir():
                folder._check(overwrite)
                if overwrite:
                    _refuse_inputs_inside(out, inputs)
        except BaseException:
            folder._stack.close()
            raise
        return folder

    @classmethod
    def resume(cls, out: Path) -> RunFolder:
        """--resume: the run's own folder, held by this process; nothing in it is ever removed."""
        folder = cls(out, resuming=True)
        folder._lock()
        return folder

    def _lock(self) -> None:
        self._stack.enter_context(fsguard.locked(self.out, "this run folder"))
        self._locked = True

    def _check(self, overwrite: bool) -> Contents:
        try:
            contents = survey(self.out)
        except OSError as err:
            raise FtkitError(f"{self.out}: cannot read the folder ({err.strerror or err}); choose another --output-dir") from None
        if message := refusal(self.out, contents, overwrite):
            raise FtkitError(message)
        return contents

    def accept(self) -> None:
        """Every input is accepted: make OUT (or clear the earlier run in it), mark and lock it."""
        if not self._locked:
            self._make()
        elif not self.out.is_dir():
            raise FtkitError(f"{self.out}: removed while the run was starting; run the command again")
        contents = self._check(self.overwrite)  # again: another process may have written it meanwhile
        self.touched, self.marked_before = True, contents.marked
        try:
            for entry in self.out.iterdir():  # an earlier run (--overwrite) and leftover probes
                if entry.name != runfiles.MARKER and (runfiles.is_run_file(entry.name) or _probe_litter(entry)):
                    remove(entry)
            _write_marker(self.out)
        except OSError as err:
            raise FtkitError(f"{self.out}: cannot prepare the run folder ({err.strerror or err}); fix it or choose another --output-dir") from None

    def _make(self) -> None:
        """mkdir OUT (and missing parents), then lock it. A folder this process made but another
        process locked first is that process's: never cleaned up from here."""
        missing = [p for p in (self.out, *self.out.parents) if not os.path.lexists(p)]
        made = []
        for path in reversed(missing):
            try:
                path.mkdir()
                made.append(path)
            except FileExistsError:  # another process made it meanwhile
                continue
            except OSError as err:
                raise FtkitError(f"{self.out}: cannot write there ({err.strerror or err}); choose another --output-dir") from None
        try:
            self._lock()
        except FileNotFoundError:  # another process removed it between mkdir and open
            raise FtkitError(f"{self.out}: another ftkit process is writing this run folder right now; "
                             "wait for it to finish, or choose another --output-dir") from None
        self.created = made
        self.touched = self.out in made

    def done(self) -> None:
        """The run is saved: from here on nothing is removed."""
        self.finished = True

    @contextlib.contextmanager
    def lifetime(self, command: str) -> Iterator[None]:
        """Hold the folder for the command. A failure before the first checkpoint leaves no trace
        of this run; Ctrl-C says in one line what was saved and how to continue (exit 130)."""
        with self._stack:
            try:
                yield
            except KeyboardInterrupt:
                raise self._interrupted(command) from None
            except BaseException:
                self._clean()
                raise

    def _clean(self) -> bool:
        """Remove what this run made, unless it finished or a checkpoint lets it --resume.
        Only run files: whatever else appeared in the folder meanwhile is someone else's."""
        if not self.writer or not self.touched or self.finished or checkpoints.latest(self.out) is not None:
            return False
        with contextlib.suppress(OSError):  # best effort: the error that brought us here matters more
            for entry in self.out.iterdir():
                if runfiles.is_run_file(entry.name) and not (entry.name == runfiles.MARKER and self.marked_before):
                    remove(entry)
            for path in reversed(self.created):  # the folders it made, if nothing else is in them now
                path.rmdir()
        return True

    def _interrupted(self, command: str) -> BaseException:
        """The one line for Ctrl-C (or SIGTERM), after removing what an unusable run made."""
        if not self.writer:  # the main process says it; the others exit quietly
            return SystemExit(130)
        out = self.out
        ours = self.touched or self.resuming
        if ours and (out / "metrics.json").is_file():
            return FtkitError(f"interrupted after the run was saved; its results are in {out}", exit_code=130)
        last = checkpoints.latest(out) if ours else None
        if last is not None:
            return FtkitError(f"interrupted; the latest checkpoint {last} is intact. "
                              f"Resume with: {command} --resume {shlex.quote(str(out))}", exit_code=130)
        if not self.touched:
            unchanged = f"; {out} is unchanged" if out.is_dir() else ""
            return FtkitError(NOT_STARTED + unchanged, exit_code=130)
        self._clean()
        removed = f"{out} removed" if self.created and not out.exists() else f"its files removed from {out}"
        return FtkitError(f"interrupted before the run saved a checkpoint; nothing was kept ({removed}). "
                          "Run the same command to start again", exit_code=130)


def _write_marker(out: Path) -> None:
    """OUT/.ftkit-run.json, written whole under a temporary name: never through a link."""
    from ftkit import __version__

    def fill(tmp: Path) -> None:
        with tmp.open("x", encoding="utf-8") as handle:  # "x": a link planted at the name is not followed
            json.dump({"ftkit": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}, handle)
            handle.write("\n")

    replace_whole(out / runfiles.MARKER, fill, tmp=run_tmp(out / runfiles.MARKER))
