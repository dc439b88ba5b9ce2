"""The run's plots, for its model card: the training curves every run gets, then its family's.

    loss.png              training loss and learning rate per step, validation loss per evaluation
    metric.png            the primary metric per validation evaluation, best marked, test as a line

A family draws its own from the final split's scores (its `figures(split, scores)`, with the
drawing functions here), e.g.

    confusion_matrix.png  classification: counts, coloured by the fraction of each gold class
    reliability.png       classification: accuracy against confidence per bin (calibration), counts below
    entity_f1.png         NER: F1 per entity type, support in the labels
    lengths.png           seq2seq: generated vs reference lengths

A plot whose data is missing is skipped, never an error. matplotlib is imported only when a
plot is drawn (`ftkit --help` stays instant), through its object API: no pyplot, no backend
switch, nothing global changed, so it works headless and in threads.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftkit.metrics import lookup
from ftkit.writes import replace_whole

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ftkit.tasks.family import Family

DPI = 100
COMMON = ("loss.png", "metric.png")  # every run's plots; a family's are its PLOTS
ANNOTATE_MAX = 20  # above this many classes, counts in the cells would be unreadable


def write_plots(
    folder: Path, log: list[dict], results: dict, primary: str, greater_is_better: bool = True, family: Family | None = None,
) -> list[tuple[str, str]]:
    """Write the PNGs that the data allows into `folder` (the training curves, and `family`'s
    plots when given); return (file name, caption) in card order."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, caption, fig in figures(log, results, primary, greater_is_better, family):
        try:  # written, then renamed: never half a PNG under the real name
            replace_whole(folder / name, functools.partial(fig.savefig, format="png", dpi=DPI), tmp=folder / f".{name}.tmp")
        finally:
            fig.clear()  # free its artists now, not at some later garbage collection
        written.append((name, caption))
    # An earlier run's plot that this one could not draw would mislead: removed. Only names some
    # run writes (the common ones, any registered family's PLOTS, this run's): a file the user put
    # in plots/ is theirs.
    from ftkit.tasks import families

    ours = {*COMMON, *(name for each in families().values() for name in each.PLOTS), *(family.PLOTS if family is not None else ())}
    for name in ours - {name for name, _ in written}:
        if (folder / name).is_file() and not (folder / name).is_symlink():
            (folder / name).unlink()
    return written


def figures(
    log: list[dict], results: dict, primary: str, greater_is_better: bool = True, family: Family | None = None,
) -> Iterator[tuple[str, str, Figure]]:
    """(file name, caption, figure) for each plot the data allows, drawn one at a time: the
    training curves, then `family`'s plots of the final split."""
    yield from named(COMMON[0], _loss(log))
    yield from named(COMMON[1], _metric(log, _split(results, "test"), primary, greater_is_better))
    if family is not None:
        yield from _final_figures(family, results)


def named(name: str, drawn: tuple[Figure, str] | None) -> Iterator[tuple[str, str, Figure]]:
    """(file name, caption, figure) of a drawn plot; nothing when its data was missing."""
    if drawn is not None:
        yield name, drawn[1], drawn[0]


def _final_figures(family: Family, results: dict) -> list[tuple[str, str, Figure]]:
    """The family's plots of the test split, else (none drawn: no test split, or no data for
    them in it) of the validation split."""
    for split in ("test", "validation"):
        made = list(family.figures(split, _split(results, split)))
        if made:
            return made
    return []


def _loss(log: list[dict]) -> tuple[Figure, str] | None:
    train = [r for r in log if r.get("type") == "train"]
    x, loss, bad = _series(train, "loss")
    lr_x, lr, _ = _series(train, "learning_rate")
    val_x, val, val_bad = _series(_evals(log), "loss")
    if not loss and not val:
        return None
    fig = figure(8, 5.5 if lr else 4)
    if lr:
        ax, ax_lr = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    else:
        ax, ax_lr = fig.subplots(), None
    if loss:
        ax.plot(x, loss, color="C0", label="train", marker="o" if len(x) <= 50 else None, markersize=3)
    if val:
        ax.plot(val_x, val, "o", color="C1", label="validation")
    ax.set_ylabel("loss")
    ax.set_title("Loss" + _dropped(bad + val_bad))
    ax.legend()
    _log_scale_if_wide(ax, loss + val)
    if ax_lr is not None:
        ax_lr.plot(lr_x, lr, color="C2", marker="o" if len(lr_x) <= 50 else None, markersize=3)
        ax_lr.set_ylabel("learning rate")
    _step_axis(ax_lr or ax)
    parts = [part for part, present in (("training loss", loss), ("learning rate", lr)) if present]
    if not parts:
        return fig, "Validation loss at each evaluation."
    return fig, " and ".join(parts).capitalize() + " per optimizer step" + (", with validation loss at each evaluation." if val else ".")


def _metric(log: list[dict], test: dict, primary: str, greater_is_better: bool) -> tuple[Figure, str] | None:
    x, y, bad = _series(_evals(log), primary)
    if not y:
        return None
    pick = max if greater_is_better else min
    best = pick(range(len(y)), key=y.__getitem__)  # the first best, as training keeps it
    name = _text(primary)
    fig = figure(8, 4.5)
    ax = fig.subplots()
    ax.plot(x, y, color="C0", marker="o", markersize=4, label="validation")
    ax.plot(x[best], y[best], "*", color="C3", markersize=16, label=f"best {y[best]:.4g} (step {_count(x[best])})")
    test_value = _num(lookup(test, primary))
    if test_value is not None:
        ax.axhline(test_value, color="C2", linestyle="--", label=f"test {test_value:.4g}")
    _step_axis(ax)
    ax.set_ylabel(f"{name} ({'higher' if greater_is_better else 'lower'} is better)")
    ax.set_title(f"Validation {name}" + _dropped(bad))
    ax.legend()
    _log_scale_if_wide(ax, y + ([test_value] if test_value is not None else []))
    caption = f"Validation {primary} at each evaluation, the best (the saved model) starred"
    return fig, caption + (", test score dashed." if test_value is not None else ".")


# --- drawing functions the families call from their `figures`: (figure, caption), or None when
# the data is missing or malformed


def confusion_matrix(split: str, cm: Any) -> tuple[Figure, str] | None:
    """{"labels": [...], "matrix": gold rows x predicted columns}: counts, coloured by row fraction."""
    import numpy as np

    checked = _square_counts(cm)
    if checked is None:
        return None
    counts, names = checked
    n = len(names)
    totals = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)  # a class with no gold rows stays 0
    side = min(4.5 + 0.3 * n, 15)
    fig = figure(side + 1.5, side)
    ax = fig.subplots()
    image = ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the gold class")
    _class_ticks(ax, names)
    if n <= ANNOTATE_MAX:
        _cell_counts(ax, counts, fractions)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(f"Confusion matrix ({split}, {_count(counts.sum())} examples)")
    return fig, f"Confusion matrix on the {split} split: counts, coloured by the fraction of each gold class."


def _square_counts(cm: Any) -> tuple[Any, list[str]] | None:
    """(counts as a float array, a drawable name per class), or None unless `cm` holds a
    non-empty square matrix of finite numbers. Class ids stand in for a missing label list."""
    import numpy as np

    if not isinstance(cm, dict):
        return None
    try:
        counts = np.asarray(cm.get("matrix"), dtype=float)
    except (TypeError, ValueError):  # ragged rows, or not numbers
        return None
    n = counts.shape[0] if counts.ndim == 2 else 0
    if n == 0 or counts.shape != (n, n) or not np.isfinite(counts).all():
        return None
    labels = cm.get("labels")
    names = [_text(str(v), 24) for v in labels] if isinstance(labels, list) and len(labels) == n else [str(i) for i in range(n)]
    return counts, names


def _class_ticks(ax: Any, names: list[str]) -> None:
    """Class names on both axes: smaller for many classes, slanted when long or many."""
    n = len(names)
    size = 10 if n <= 10 else 8 if n <= 20 else 6
    rotate = n > 6 or max(len(s) for s in names) > 6
    ax.set_xticks(range(n), names, fontsize=size, rotation=45 if rotate else 0, ha="right" if rotate else "center", rotation_mode="anchor")
    ax.set_yticks(range(n), names, fontsize=size)


def _cell_counts(ax: Any, counts: Any, fractions: Any) -> None:
    """Each cell's count, white on the dark (over half of the gold class) cells."""
    import numpy as np

    n = counts.shape[0]
    for i, j in np.ndindex(n, n):
        ax.text(j, i, _count(counts[i, j]), ha="center", va="center", fontsize=10 if n <= 10 else 7,
                color="white" if fractions[i, j] > 0.5 else "black")


def reliability(split: str, bins: Any, ece: Any = None, ece_uncalibrated: Any = None) -> tuple[Figure, str] | None:
    """{"confidence", "accuracy", "count"} per equal-width confidence bin (metrics.calibration):
    the accuracy of each bin against the diagonal of perfect calibration, the counts below."""
    checked = _bins(bins)
    if checked is None:
        return None
    accuracy, counts = checked
    m = len(counts)
    fig = figure(6, 6.5)
    ax, ax_n = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    filled = [i for i in range(m) if counts[i] > 0]
    ax.bar([i / m for i in filled], [accuracy[i] for i in filled], width=1 / m, align="edge", color="C0", edgecolor="white", label="accuracy")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left")
    ax_n.bar([i / m for i in range(m)], counts, width=1 / m, align="edge", color="C7", edgecolor="white")
    ax_n.set_xlabel("confidence (the predicted class's probability)")
    ax_n.set_ylabel("examples")
    ece, before = _num(ece), _num(ece_uncalibrated)
    ax.set_title(f"Reliability ({split}" + (f", ECE {ece:.3f}" if ece is not None else "") + (f"; {before:.3f} uncalibrated" if before is not None else "") + ")")
    caption = f"Reliability diagram on the {split} split: accuracy per confidence bin ({m} equal-width bins) against the dashed diagonal of perfect calibration; examples per bin below."
    return fig, caption + (" Scores calibrated by temperature scaling." if before is not None else "")


def _bins(bins: Any) -> tuple[list[float], list[float]] | None:
    """(accuracy, count) per bin, or None unless `bins` holds equally long lists of them (an empty
    bin's accuracy is None; counts are finite and >= 0)."""
    if not isinstance(bins, dict) or not isinstance(bins.get("count"), list) or not isinstance(bins.get("accuracy"), list):
        return None
    counts, accuracy = [_num(c) for c in bins["count"]], [_num(a) for a in bins["accuracy"]]
    if not counts or len(accuracy) != len(counts) or any(c is None or c < 0 for c in counts):
        return None
    if any(c > 0 and (a is None or not 0 <= a <= 1) for a, c in zip(accuracy, counts)) or not any(counts):
        return None
    return [a or 0.0 for a in accuracy], [float(c) for c in counts]  # type: ignore[misc]


def entity_f1(split: str, per_type: Any, what: str = "entity type") -> tuple[Figure, str] | None:
    """{type: {"f1", "support", ...}}: a bar per entity type (or per `what`: "label"), the best on top."""
    if not isinstance(per_type, dict):
        return None
    rows = [(str(k), _num(v.get("f1")), v.get("support")) for k, v in per_type.items() if isinstance(v, dict)]
    rows = sorted((r for r in rows if r[1] is not None), key=lambda r: r[1])  # barh draws upwards: best on top
    if not rows:
        return None
    fig = figure(7, min(1.5 + 0.4 * len(rows), 20))
    ax = fig.subplots()
    bars = ax.barh(range(len(rows)), [f1 for _, f1, _ in rows], color="C0")
    ax.bar_label(bars, fmt="%.3f", padding=3, fontsize=8)
    labels = [_text(name, 30) + (f" (n={support})" if isinstance(support, int) else "") for name, _, support in rows]
    ax.set_yticks(range(len(rows)), labels)
    ax.set_xlim(0, 1.12)  # room for the value labels past a bar of 1.0
    ax.set_xlabel("F1")
    ax.set_title(f"F1 per {what} ({split})")
    return fig, f"F1 per {what} on the {split} split, support in brackets."


def length_histograms(split: str, lengths: Any) -> tuple[Figure, str] | None:
    """{"unit", "generated": [[length, count], ...], "reference": [...]}: histograms on shared bins, means dashed."""
    import numpy as np

    if not isinstance(lengths, dict):
        return None
    series = {name: _pairs(lengths.get(name)) for name in ("generated", "reference")}
    series = {name: pairs for name, pairs in series.items() if pairs}
    if not series:
        return None
    values = [length for pairs in series.values() for length, _ in pairs]
    lo, hi = math.floor(min(values)), math.ceil(max(values))
    width = max(1, math.ceil((hi - lo + 1) / 40))  # at most ~40 bins, shared so the two compare
    edges = np.arange(lo, hi + width + 1, width) - 0.5
    unit = _text(str(lengths.get("unit") or "tokens"))
    fig = figure(8, 4.5)
    ax = fig.subplots()
    for name, pairs in series.items():
        colour = "C0" if name == "generated" else "C1"
        x, weights = zip(*pairs)
        total = sum(weights)
        mean = sum(v * c for v, c in pairs) / total
        ax.hist(x, bins=edges, weights=weights, color=colour, alpha=0.5, label=f"{name} (n={total:g})")
        ax.axvline(mean, color=colour, linestyle="--", linewidth=1.5, label=f"{name} mean {mean:.1f}")
    ax.set_xlabel(f"length ({unit})")
    ax.set_ylabel("examples")
    ax.set_title(f"Output lengths ({split})")
    ax.legend()
    return fig, f"Generated and reference lengths on the {split} split, means dashed."


# --- helpers


def figure(width: float, height: float) -> Figure:
    """A figure drawn by Agg, with no pyplot state: headless and thread-safe (families' figures() use it too)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself to fig
    return fig


def _split(results: dict, split: str) -> dict:
    scores = results.get(split)
    return scores if isinstance(scores, dict) else {}


def _evals(log: list[dict]) -> list[dict]:
    return [r for r in log if r.get("type") == "eval" and r.get("split") == "validation"]


def _series(records: list[dict], key: str) -> tuple[list[float], list[float], int]:
    """(steps, values, how many values were NaN/inf) of the records that hold `key` and a step."""
    xs, ys, bad = [], [], 0
    for record in records:
        step, value = _num(record.get("step")), lookup(record, key)
        if step is None or value is None:
            continue
        if math.isfinite(value):
            xs.append(step)
            ys.append(value)
        else:
            bad += 1
    return xs, ys, bad


def _pairs(value: Any) -> list[tuple[float, float]]:
    """[[length, count], ...] -> the well-formed pairs (finite length >= 0, count > 0)."""
    if not isinstance(value, list):
        return []
    pairs = []
    for item in value:
        if isinstance(item, (list, tuple)) and len(item) == 2:
            length, count = _num(item[0]), _num(item[1])
            if length is not None and length >= 0 and count is not None and count > 0:
                pairs.append((length, count))
    return pairs


def _num(value: Any) -> float | None:
    """A finite number as float, else None (bools, strings, NaN and inf are not data)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _step_axis(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("optimizer step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole: no tick at 22.5


def _log_scale_if_wide(ax: Any, values: list[float]) -> None:
    # Perplexity or an early loss can be 100x the final one; a linear axis flattens the rest.
    if values and min(values) > 0 and max(values) / min(values) > 100:
        ax.set_yscale("log")


def _dropped(count: int) -> str:
    return f" ({count} NaN/inf value{'s' if count > 1 else ''} not shown)" if count else ""


def _count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


def _text(text: str, limit: int = 80) -> str:
    """User text made safe to draw: shortened, and '$' escaped (else it starts mathtext, which may fail)."""
    short = text if len(text) <= limit else text[: limit - 1] + "…"
    return short.replace("$", r"\$")
