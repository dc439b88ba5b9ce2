"""The `ftkit` command: wires the command modules; errors become one line on stderr."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import typer

from ftkit.cli import data, env, export, finetune, inference, options, push, recipes, runs, sweep
from ftkit.errors import FtkitError, first_line

SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")  # the shells Typer writes completion for
# Commands that write files catch Ctrl-C themselves and say what was saved; this is the rest.
INTERRUPTED = "interrupted (Ctrl-C); this command had not written anything yet, so nothing changed"
invoked: list[str] = []  # the arguments of this `ftkit` call, for the command a run records

app = typer.Typer(
    name="ftkit",
    help="Fine-tune pretrained transformers on real tasks and report honest metrics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # main() prints one line; FTKIT_DEBUG=1 shows the traceback
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    cls=options.PlainGroup,  # every command's --help names values with words, not Python types
)
app.command("finetune", no_args_is_help=True)(finetune.finetune)
app.command("reproduce", no_args_is_help=True)(finetune.reproduce)
app.command("sweep", no_args_is_help=True)(sweep.sweep)
app.command("evaluate", no_args_is_help=True)(inference.evaluate)
app.command("predict", no_args_is_help=True)(inference.predict)
app.command("export", no_args_is_help=True)(export.export)
app.add_typer(recipes.app, name="recipes")
app.add_typer(runs.app, name="runs")
app.add_typer(data.app, name="data")
app.command("env")(env.env)
app.command("push", no_args_is_help=True)(push.push)


def _version(value: bool) -> None:
    if value:
        from ftkit import __version__

        typer.echo(f"ftkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Fine-tune pretrained transformers on real tasks and report honest metrics.

    [dim]Start with: ftkit recipes list · ftkit finetune sentiment --model bert-base-uncased[/dim]
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point: expected failures print `error: ...` and exit 2 (bad input) or 1 (run time)."""
    debug = os.environ.get("FTKIT_DEBUG", "") not in ("", "0")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)  # as Ctrl-C: clean exit 130 (training saves a checkpoint first)
    global invoked
    invoked = _resume_path(list(sys.argv[1:] if argv is None else argv))
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
    from typer.exceptions import Abort

    try:
        if shell_request := _shell_request(invoked):
            _completion_script(*shell_request)
            return
        # Not standalone: click's own handling would print a multi-line usage box for a bad flag
        # and turn Ctrl-C into "Aborted!" with exit 1. Completion still works: with _FTKIT_COMPLETE
        # set, Typer answers and exits (SystemExit) before any of the handling below.
        code = app(args=invoked, prog_name="ftkit", standalone_mode=False)
        if code == 130:  # Typer turned a Ctrl-C no command caught into a silent Exit(130)
            _say(INTERRUPTED)
        if isinstance(code, int) and code:  # typer.Exit(code) returns its code here
            sys.exit(code)
    except NoArgsIsHelpError as err:
        err.show()
        sys.exit(err.exit_code)
    except UsageError as err:
        command = err.ctx.command_path if err.ctx else "ftkit"
        _say(f"error: {_one_line(err.format_message())} (see '{command} --help')")
        sys.exit(2)
    except (KeyboardInterrupt, Abort):
        _say(INTERRUPTED)
        sys.exit(130)
    except FtkitError as err:
        if debug:
            raise
        # 130: stopped on request (Ctrl-C / SIGTERM), which is not an error
        _say(("" if err.exit_code == 130 else "error: ") + _one_line(err.message))
        sys.exit(err.exit_code)
    except Exception as err:  # an ftkit bug or an unexpected library failure: one line, no locals
        if debug:
            raise
        _say(f"error: {type(err).__name__}: {first_line(err, empty='')[:300]} (set FTKIT_DEBUG=1 for the traceback)")
        sys.exit(1)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _resume_path(argv: list[str]) -> list[str]:
    """finetune/reproduce `--resume` takes an optional folder: `--resume PATH` when PATH is a
    folder (or a missing path, which resume then names), else `--resume=`, so that the recipe
    or a file after a bare --resume is not taken for its value."""
    if not argv or argv[0] not in ("finetune", "reproduce", "sweep"):
        return list(argv)
    out = list(argv)
    for i, arg in enumerate(argv):
        if arg == "--resume" and not (i + 1 < len(argv) and _names_a_run(argv[i + 1])):
            out[i] = "--resume="
    return out


def _names_a_run(arg: str) -> bool:
    """Whether the word after --resume is its folder: a folder, or a missing path that is not a recipe file."""
    if arg.startswith("-"):
        return False
    return Path(arg).is_dir() or (os.sep in arg and not os.path.lexists(arg) and not arg.endswith((".yaml", ".yml")))


def _shell_request(argv: list[str]) -> tuple[str, str] | None:
    """(flag, shell) for `--show-completion zsh` or `--install-completion=fish`, else None.

    Typer's two flags take no value: they detect the running shell and ignore a name after them,
    so `--show-completion bash` run from zsh printed zsh's script, and from sh (a Dockerfile's
    RUN, a CI step) failed with "Shell dash not supported". A bare flag still goes to Typer.
    """
    if len(argv) == 1 and "=" in argv[0]:
        argv = argv[0].split("=", 1)
    if len(argv) == 2 and argv[0] in ("--show-completion", "--install-completion"):
        return argv[0], argv[1]
    return None


def _completion_script(flag: str, shell: str) -> None:
    """Print, or install where Typer would, the completion script for the named shell."""
    from typer._completion_shared import get_completion_script, install

    if shell not in SHELLS:
        raise FtkitError(f"{flag}: unknown shell '{shell}'; choose one of {', '.join(SHELLS)}")
    if flag == "--show-completion":
        typer.echo(get_completion_script(prog_name="ftkit", complete_var="_FTKIT_COMPLETE", shell=shell))
    else:
        _, path = install(shell=shell, prog_name="ftkit", complete_var="_FTKIT_COMPLETE")
        typer.echo(f"{shell} completion installed in {path}; it takes effect in a new terminal")


def _say(line: str) -> None:
    """One line on stderr in one write: processes started together (accelerate launch) share the
    pipe, and print()'s separate newline let two processes' lines run into one."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _one_line(message: str) -> str:
    """Messages may quote user input holding newlines; the error stays one line."""
    return " ".join(message.split("\n"))
