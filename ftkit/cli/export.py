"""`ftkit export`: a run's model as an ONNX graph for fast CPU inference, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ftkit.cli import options as o
from ftkit.errors import FtkitError, closest

FORMATS = ("onnx",)


def export(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (--output-dir of finetune).", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="What to export to: onnx (ONNX Runtime).")] = "onnx",
    quantize: Annotated[Optional[str], typer.Option("--quantize", help="Also write an int8 graph (model.int8.onnx): smaller and faster on CPU; its metric change is reported.", show_default=False)] = None,
    rows: Annotated[int, typer.Option("--rows", help="Rows of the run's test split the parity check compares.")] = 1000,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per forward pass in the parity check.")] = 32,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier export (RUN/onnx/); nothing else in the run changes.")] = False,
    trust_remote_code: o.TrustRemoteCodeOpt = False,
    allow_pickle: o.AllowPickleOpt = False,
) -> None:
    """Export a run's model to RUN/onnx/ and check it on the run's test split: max |logit
    difference| and label agreement against PyTorch (parity.json, and a table here).

    [dim]ftkit export runs/sentiment-20260101-120000 --format onnx
    ftkit export runs/sentiment-20260101-120000 --format onnx --quantize int8 --overwrite
    ftkit predict runs/sentiment-20260101-120000 reviews.txt --runtime onnx[/dim]
    """
    from ftkit.checks import check_flag

    if fmt not in FORMATS:
        raise FtkitError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'.{closest(fmt, FORMATS)}")
    if quantize is not None and quantize not in ("int8",):
        raise FtkitError(f"--quantize must be int8, got '{quantize}'.{closest(quantize, ['int8'])}")
    check_flag("--batch-size", "train.eval_batch_size", batch_size)
    check_flag("--rows", "data.max_eval_samples", rows)
    from ftkit.export import export as run_export
    from ftkit.runfiles import resolve_model_dir

    o.apply_policy(trust_remote_code, allow_pickle)
    if not run_dir.exists():
        raise FtkitError(f"{run_dir}: no such folder; pass the --output-dir of a finished `ftkit finetune`")
    model_dir, config = resolve_model_dir(run_dir)
    try:
        report = run_export(model_dir, config, quantize, overwrite, rows, batch_size)
    except KeyboardInterrupt:
        raise FtkitError("interrupted before the export finished; the run folder was left as it was", exit_code=130) from None
    _print_parity(report)
    from ftkit.onnx_runtime import onnx_dir

    typer.echo(f"wrote {onnx_dir(model_dir, config)} (parity.json: the check above)", err=True)


def _print_parity(report: dict[str, Any]) -> None:
    """One row per runtime: logits against PyTorch's, top-label agreement, the run's primary metric."""
    from rich.console import Console
    from rich.table import Table

    metric = report["metric"]
    table = Table(title=f"ONNX parity: {report['rows']} rows of the {report['split']} split", title_justify="left")
    for column in ("runtime", "max |logit diff|", "label agreement", metric):
        table.add_column(column, justify="left" if column == "runtime" else "right")
    torch_value = report["torch"].get(metric)
    table.add_row("torch", "-", "-", _number(torch_value))
    for runtime, result in report["runtimes"].items():
        value = result.get(metric)
        change = f" ({value - torch_value:+.4f})" if isinstance(value, (int, float)) and isinstance(torch_value, (int, float)) else ""
        agreement = "-" if result["label_agreement"] is None else f"{result['label_agreement']:.2%}"
        table.add_row(runtime, f"{result['max_abs_diff']:.2e}", agreement, _number(value) + change)
    Console().print(table)


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"
