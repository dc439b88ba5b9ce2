"""Rich tables for results: the metrics of a run and the pass/fail of `expect:` bars."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ftkit.metrics import check_bars

SUMMARY_KEYS = ("accuracy", "precision", "recall", "f1", "loss", "samples", "entities")


def print_metrics(results: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    """Validation/test metrics side by side (macro and per class), then the training figures.
    `headers` names a split's column for what was scored (evaluate: the data file)."""
    splits = [s for s in ("validation", "test") if results.get(s)]
    table = Table(title="metrics", title_justify="left")
    table.add_column("metric")
    for split in splits:
        table.add_column(Text((headers or {}).get(split, split)), justify="right")  # Text: a file name is not markup
    numeric = {k for s in splits for k, v in results[s].items() if isinstance(v, (int, float)) and k not in ("step", "epoch")}
    keys = [k for k in SUMMARY_KEYS if k in numeric] + sorted(numeric - set(SUMMARY_KEYS))
    for key in keys:
        table.add_row(key, *[_fmt(results[s].get(key)) for s in splits])
    for group in ("per_class", "per_type"):  # classes (classification), entity types (NER)
        names = {name for s in splits for name in results[s].get(group, {})}
        for name in sorted(names):
            for part in ("precision", "recall", "f1"):
                table.add_row(f"{name} {part}", *[_fmt(results[s].get(group, {}).get(name, {}).get(part)) for s in splits])
    console = Console()
    console.print(table)
    train = results.get("train")
    if train:
        console.print(
            f"train: loss {train['loss']:.4f}, {train['steps']} steps, {train['runtime_s']:.1f} s, "
            f"{train['samples_per_second']:.1f} samples/s",
            highlight=False,
        )


def print_bars(expect: dict[str, str], metrics: dict[str, Any], section: str) -> bool:
    """The pass/fail table of `expect:` bars against `metrics`; True when every bar is met."""
    rows = check_bars(metrics, expect)
    table = Table(title=f"expect ({section})", title_justify="left")
    for column in ("metric", "bar", "value", "result"):
        table.add_column(column)
    for row in rows:
        verdict = "[green]pass[/green]" if row["passed"] else "[red]FAIL[/red]"
        table.add_row(row["metric"], row["bar"], _fmt(row["value"]) if row["value"] is not None else "missing", verdict)
    Console().print(table)
    return all(r["passed"] for r in rows)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}"
