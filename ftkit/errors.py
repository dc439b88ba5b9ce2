"""The one error type ftkit raises for expected failures: a clean message that names the fix."""

from __future__ import annotations


class FtkitError(Exception):
    """An expected failure; the CLI prints `message` as one line and exits with `exit_code`.

    Exit code 2 is bad usage or bad input: the user can fix the command (a malformed file, a
    wrong flag, a Hub id not reachable offline, an output place that cannot be written); 1 is
    a failure at run time (a metric bar not met, an unexpected library failure, ...).
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def nearest(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """The choice spelled most like `word`, or None when nothing is close."""
    import difflib

    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return match[0] if match else None


def closest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """A ' Did you mean X?' suffix for the nearest choice, or '' when nothing is close."""
    match = nearest(word, choices)
    return f" Did you mean '{match}'?" if match else ""


def first_line(err: BaseException, empty: str | None = None) -> str:
    """The first line of a library's error message, for a one-line report; for an error with no
    message, `empty` (by default its type name)."""
    text = str(err).strip()
    if text:
        return text.splitlines()[0]
    return type(err).__name__ if empty is None else empty
