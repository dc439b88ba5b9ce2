"""Plots of a run: the right files for each task family (the training curves, and the plots its
family module draws), valid PNGs, the data really drawn,
and a missing or broken piece of data skips its plot instead of failing the run."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from ftkit.plots import figures, write_plots
from ftkit.tasks import get_task

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLS, NER, S2S, CLM = (get_task(name) for name in ("sequence-classification", "token-classification", "seq2seq", "causal-lm"))


# --- realistic inputs: what train.py logs and what metrics.json holds, per task family


def train_records(steps: int = 40, every: int = 5, start_loss: float = 1.2) -> list[dict]:
    """Loss falling, linear warmup then decay, as a 40-step run logging every 5 steps writes."""
    records = []
    for step in range(every, steps + 1, every):
        lr = 5e-5 * min(step / 8, (steps - step) / (steps - 8))
        records.append({"type": "train", "step": step, "epoch": round(step / 20, 4), "loss": start_loss / (1 + step / 10),
                        "learning_rate": lr, "samples_per_second": 120.0})
    return records


def eval_record(step: int, split: str = "validation", **scores) -> dict:
    record = {"type": "eval", "split": split, "step": step, **scores}
    if split == "validation":
        record["epoch"] = round(step / 20, 4)
    return record


def confusion(names: list[str], seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    n = len(names)
    matrix = rng.integers(0, 5, (n, n)) + np.diag(rng.integers(10, 40, n))
    return {"labels": names, "matrix": matrix.tolist()}


def classification_run(names: list[str] | None = None, test: bool = True) -> tuple[list[dict], dict]:
    names = names or ["negative", "neutral", "positive"]
    per_class = {n: {"precision": 0.8, "recall": 0.7, "f1": 0.75, "support": 20} for n in names}

    def scores(accuracy: float, loss: float, seed: int) -> dict:
        return {"accuracy": accuracy, "precision": 0.8, "recall": 0.7, "f1": 0.75, "loss": loss, "samples": 60,
                "per_class": per_class, "confusion_matrix": confusion(names, seed)}

    evals = [eval_record(20, **scores(0.70, 0.80, 1)), eval_record(40, **scores(0.85, 0.55, 2))]
    log = train_records() + evals
    results = {"train": {"loss": 0.6, "steps": 40}, "validation": {**evals[1], "step": 40, "epoch": 2.0}}
    if test:
        results["test"] = scores(0.82, 0.6, 3)
        log.append(eval_record(40, "test", **results["test"]))
    return log, results


def ner_run() -> tuple[list[dict], dict]:
    per_type = {"PER": {"precision": 0.9, "recall": 0.95, "f1": 0.92, "support": 120},
                "LOC": {"precision": 0.8, "recall": 0.85, "f1": 0.82, "support": 80},
                "ORG": {"precision": 0.6, "recall": 0.5, "f1": 0.55, "support": 40},
                "MISC": {"precision": 0.7, "recall": 0.7, "f1": 0.70, "support": 30}}
    scores = {"precision": 0.8, "recall": 0.8, "f1": 0.8, "accuracy": 0.95, "loss": 0.2, "samples": 50, "entities": 270, "per_type": per_type}
    log = train_records() + [eval_record(20, **{**scores, "f1": 0.6}), eval_record(40, **scores), eval_record(40, "test", **scores)]
    return log, {"train": {}, "validation": {**scores, "step": 40}, "test": scores}


GENERATED = [[8, 3], [9, 10], [10, 12], [11, 5], [30, 1]]
REFERENCE = [[7, 2], [9, 6], [12, 14], [14, 8], [20, 2]]


def seq2seq_run() -> tuple[list[dict], dict]:
    scores = {"rouge1": 0.31, "rouge2": 0.12, "rougeL": 0.27, "rougeLsum": 0.27, "gen_len": 10.2, "loss": 2.1, "samples": 32,
              "lengths": {"unit": "tokens", "generated": GENERATED, "reference": REFERENCE}}
    log = train_records(start_loss=4.0) + [eval_record(20, **{**scores, "rougeL": 0.2}), eval_record(40, **scores), eval_record(40, "test", **scores)]
    return log, {"train": {}, "validation": {**scores, "step": 40}, "test": scores}


def causal_lm_run() -> tuple[list[dict], dict]:
    evals = [eval_record(s, loss=math.log(p), perplexity=p, samples=10) for s, p in ((10, 9000.0), (20, 80.0), (30, 40.0), (40, 42.0))]
    test = {"loss": math.log(45.0), "perplexity": 45.0, "samples": 10}
    return train_records(start_loss=9.0) + evals, {"train": {}, "validation": {**evals[2], "step": 30}, "test": test}


# --- helpers


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    height, width = imread(path).shape[:2]
    assert height > 100 and width > 100


def assert_folder_matches(folder: Path, written: list[tuple[str, str]]) -> None:
    """The files are exactly those returned, each a valid PNG, each with a one-sentence caption."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(name for name, _ in written)
    for name, caption in written:
        assert_png(folder / name)
        assert caption.endswith(".") and "\n" not in caption and caption.count(". ") == 0 and len(caption) < 140


def built(log: list[dict], results: dict, primary: str, greater_is_better: bool = True, family=None) -> dict:
    """{file name: figure} without writing anything, to inspect what is drawn."""
    return {name: fig for name, _, fig in figures(log, results, primary, greater_is_better, family)}


def lines(ax) -> dict:
    return {line.get_label(): line for line in ax.lines}


def inside(fig, texts) -> bool:
    """Every text lies within the figure: nothing cut off at the edges."""
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    box = fig.bbox
    return all(box.x0 - 1 <= t.get_window_extent(renderer).x0 and t.get_window_extent(renderer).x1 <= box.x1 + 1
               and box.y0 - 1 <= t.get_window_extent(renderer).y0 and t.get_window_extent(renderer).y1 <= box.y1 + 1 for t in texts)


# --- which files each family gets


@pytest.mark.parametrize(("run", "family", "primary", "greater", "expected"), [
    (classification_run, CLS, "accuracy", True, ["loss.png", "metric.png", "confusion_matrix.png"]),
    (classification_run, CLS, "per_class.negative.f1", True, ["loss.png", "metric.png", "confusion_matrix.png"]),
    (ner_run, NER, "f1", True, ["loss.png", "metric.png", "entity_f1.png"]),
    (seq2seq_run, S2S, "rougeL", True, ["loss.png", "metric.png", "lengths.png"]),
    (causal_lm_run, CLM, "perplexity", False, ["loss.png", "metric.png"]),
    (classification_run, None, "accuracy", True, ["loss.png", "metric.png"]),  # no family: the training curves only
])
def test_each_family_gets_its_plots(tmp_path, run, family, primary, greater, expected):
    log, results = run()
    folder = tmp_path / "plots" / "nested"  # created, parents too
    written = write_plots(folder, log, results, primary, greater, family)
    assert [name for name, _ in written] == expected
    assert_folder_matches(folder, written)


def test_nothing_to_plot_writes_nothing_and_raises_nothing(tmp_path):
    assert write_plots(tmp_path / "plots", [], {}, "accuracy", family=CLS) == []
    assert list((tmp_path / "plots").iterdir()) == []
    assert write_plots(tmp_path / "plots", [], {"train": {}, "validation": {}}, "accuracy", family=CLS) == []


def test_a_single_train_record_gives_a_visible_loss_point(tmp_path):
    log = train_records(steps=5)
    assert len(log) == 1
    written = write_plots(tmp_path, log, {"train": {"loss": 1.0}, "validation": {}}, "accuracy")
    assert [name for name, _ in written] == ["loss.png"]
    assert_folder_matches(tmp_path, written)
    fig = built(log, {}, "accuracy")["loss.png"]
    train = lines(fig.axes[0])["train"]
    assert train.get_marker() == "o" and train.get_xydata().tolist() == [[5, log[0]["loss"]]]  # a lone point, not an invisible line


def test_no_evaluation_records_skip_the_metric_plot(tmp_path):
    _, results = classification_run()
    written = write_plots(tmp_path, train_records(), results, "accuracy", family=CLS)
    assert [name for name, _ in written] == ["loss.png", "confusion_matrix.png"]
    assert_folder_matches(tmp_path, written)
    assert lines(built(train_records(), results, "accuracy")["loss.png"].axes[0]).keys() == {"train"}  # no validation points


def test_a_primary_metric_the_records_lack_skips_the_metric_plot(tmp_path):
    log, results = classification_run()
    written = write_plots(tmp_path, log, results, "per_class.nope.f1", family=CLS)
    assert "metric.png" not in dict(written)
    assert_folder_matches(tmp_path, written)


def test_missing_test_split_uses_validation(tmp_path):
    log, results = classification_run(test=False)
    written = dict(write_plots(tmp_path, log, results, "accuracy", family=CLS))
    assert "validation split" in written["confusion_matrix.png"] and "test" not in written["metric.png"]
    figs = built(log, results, "accuracy", family=CLS)
    assert not any(label.startswith("test") for label in lines(figs["metric.png"].axes[0]))
    assert "(validation, " in figs["confusion_matrix.png"].axes[0].get_title()
    shown = figs["confusion_matrix.png"].axes[0].images[0].get_array()
    expected = np.asarray(results["validation"]["confusion_matrix"]["matrix"], dtype=float)
    assert np.allclose(shown, expected / expected.sum(axis=1, keepdims=True))


# --- the data is really drawn


def test_loss_plot_draws_train_loss_learning_rate_and_validation_loss():
    log, results = classification_run()
    fig = built(log, results, "accuracy")["loss.png"]
    top, bottom = fig.axes
    drawn = lines(top)
    train = [r for r in log if r["type"] == "train"]
    assert drawn["train"].get_xydata().tolist() == [[r["step"], r["loss"]] for r in train]
    assert drawn["validation"].get_xydata().tolist() == [[20, 0.80], [40, 0.55]]  # test eval record not among them
    assert bottom.lines[0].get_xydata().tolist() == [[r["step"], r["learning_rate"]] for r in train]
    assert bottom.get_shared_x_axes().joined(top, bottom) and bottom.get_xlabel() == "optimizer step"


def test_metric_plot_marks_the_best_and_the_test_line():
    log, results = classification_run()
    ax = built(log, results, "accuracy")["metric.png"].axes[0]
    drawn = lines(ax)
    assert drawn["validation"].get_xydata().tolist() == [[20, 0.70], [40, 0.85]]
    best = next(line for label, line in drawn.items() if label.startswith("best"))
    assert best.get_xydata().tolist() == [[40, 0.85]]
    test = next(line for label, line in drawn.items() if label.startswith("test"))
    assert list(test.get_ydata()) == [0.82, 0.82]
    assert "accuracy" in ax.get_title() and "higher is better" in ax.get_ylabel()
    assert all(float(tick).is_integer() for tick in ax.get_xticks())  # steps are whole numbers


def test_lower_is_better_marks_the_minimum_and_wide_ranges_go_log():
    log, results = causal_lm_run()
    ax = built(log, results, "perplexity", greater_is_better=False)["metric.png"].axes[0]
    best = next(line for label, line in lines(ax).items() if label.startswith("best"))
    assert best.get_xydata().tolist() == [[30, 40.0]]  # not the first, not the last: the minimum
    assert ax.get_yscale() == "log" and "lower is better" in ax.get_ylabel()  # 9000 -> 40 would flatten on a linear axis
    ax = built(log, results, "perplexity", greater_is_better=True)["metric.png"].axes[0]
    assert next(line for label, line in lines(ax).items() if label.startswith("best")).get_xydata().tolist() == [[10, 9000.0]]


def test_dotted_primary_metric_is_read_from_each_evaluation():
    log, results = classification_run()
    for record in log:
        if record["type"] == "eval" and record["split"] == "validation":
            record["per_class"] = {"spam": {"f1": record["step"] / 100}}
    ax = built(log, results, "per_class.spam.f1")["metric.png"].axes[0]
    assert lines(ax)["validation"].get_xydata().tolist() == [[20, 0.2], [40, 0.4]]


def test_confusion_matrix_colours_row_fractions_and_writes_counts():
    names = ["negative", "neutral", "positive"]
    cm = {"labels": names, "matrix": [[8, 2, 0], [1, 1, 2], [0, 0, 0]]}  # a class with no gold examples
    ax = built([], {"test": {"confusion_matrix": cm}}, "accuracy", family=CLS)["confusion_matrix.png"].axes[0]
    assert np.allclose(ax.images[0].get_array(), [[0.8, 0.2, 0], [0.25, 0.25, 0.5], [0, 0, 0]])
    assert [t.get_text() for t in ax.texts] == ["8", "2", "0", "1", "1", "2", "0", "0", "0"]  # row by row: gold rows
    assert [t.get_text() for t in ax.get_xticklabels()] == names == [t.get_text() for t in ax.get_yticklabels()]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "gold")
    assert "14 examples" in ax.get_title()


def test_confusion_matrix_prefers_test_over_validation():
    log, results = classification_run()
    ax = built(log, results, "accuracy", family=CLS)["confusion_matrix.png"].axes[0]
    assert "(test, " in ax.get_title()
    assert [t.get_text() for t in ax.texts][:3] == [str(c) for c in results["test"]["confusion_matrix"]["matrix"][0]]


@pytest.mark.parametrize(("classes", "annotated"), [(2, True), (10, True), (20, True), (30, False), (50, False)])
def test_confusion_matrix_copes_with_many_classes(tmp_path, classes, annotated):
    names = [f"category_number_{i:02d}_with_a_long_name" for i in range(classes)]
    results = {"validation": {"confusion_matrix": confusion(names)}}  # only this plot: rendering is the slow part
    written = write_plots(tmp_path, [], results, "accuracy", family=CLS)
    assert [name for name, _ in written] == ["confusion_matrix.png"]
    assert_folder_matches(tmp_path, written)
    height, width = imread(tmp_path / "confusion_matrix.png").shape[:2]
    assert width <= 1700 and height <= 1600
    fig = built([], results, "accuracy", family=CLS)["confusion_matrix.png"]
    ax = fig.axes[0]
    assert len(ax.texts) == (classes * classes if annotated else 0)
    assert len(ax.get_xticklabels()) == classes
    assert inside(fig, [*ax.get_xticklabels(), *ax.get_yticklabels(), ax.title, ax.xaxis.label, ax.yaxis.label])


@pytest.mark.filterwarnings("ignore:Glyph")  # CJK glyphs may be missing from the default font: boxes, not errors
def test_unicode_and_dollar_class_names(tmp_path):
    names = ["café", "naïve", "Ωmega", "日本語", "$5 off", "50% $ave$"]
    log, results = classification_run(names)
    written = write_plots(tmp_path, log, results, "accuracy", family=CLS)
    assert_folder_matches(tmp_path, written)
    ax = built(log, results, "accuracy", family=CLS)["confusion_matrix.png"].axes[0]
    shown = [t.get_text() for t in ax.get_yticklabels()]
    assert shown[:4] == names[:4] and shown[4:] == [r"\$5 off", r"50% \$ave\$"]  # escaped: '$' would start mathtext


def test_entity_f1_bars_sorted_with_support():
    log, results = ner_run()
    fig = built(log, results, "f1", family=NER)["entity_f1.png"]
    ax = fig.axes[0]
    widths = [bar.get_width() for bar in ax.patches]
    assert widths == [0.55, 0.70, 0.82, 0.92]  # bottom to top: the best on top
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ORG (n=40)", "MISC (n=30)", "LOC (n=80)", "PER (n=120)"]
    assert "(test)" in ax.get_title() and ax.get_xlabel() == "F1"
    assert inside(fig, [*ax.get_yticklabels(), *ax.texts])


def test_lengths_histograms_share_bins_and_mark_means():
    log, results = seq2seq_run()
    ax = built(log, results, "rougeL", family=S2S)["lengths.png"].axes[0]
    generated, reference = ax.containers  # one BarContainer per hist() call
    assert sum(p.get_height() for p in generated) == sum(c for _, c in GENERATED)
    assert sum(p.get_height() for p in reference) == sum(c for _, c in REFERENCE)
    assert [p.get_x() for p in generated] == [p.get_x() for p in reference]  # the same bins
    drawn = lines(ax)
    gen_mean = sum(v * c for v, c in GENERATED) / sum(c for _, c in GENERATED)
    ref_mean = sum(v * c for v, c in REFERENCE) / sum(c for _, c in REFERENCE)
    assert drawn[f"generated mean {gen_mean:.1f}"].get_xdata()[0] == pytest.approx(gen_mean)
    assert drawn[f"reference mean {ref_mean:.1f}"].get_xdata()[0] == pytest.approx(ref_mean)
    assert ax.get_xlabel() == "length (tokens)"


def test_png_bytes_follow_the_data(tmp_path):
    log, results = classification_run()
    write_plots(tmp_path / "a", log, results, "accuracy")
    write_plots(tmp_path / "b", log, results, "accuracy")
    changed = [{**r, "loss": r["loss"] * 2} if r["type"] == "train" else r for r in log]
    write_plots(tmp_path / "c", changed, results, "accuracy")
    same = (tmp_path / "a" / "loss.png").read_bytes()
    assert (tmp_path / "b" / "loss.png").read_bytes() == same  # rendering is deterministic, so a difference means the data
    assert (tmp_path / "c" / "loss.png").read_bytes() != same
    assert (tmp_path / "c" / "metric.png").read_bytes() == (tmp_path / "a" / "metric.png").read_bytes()


# --- broken or partial data: skipped, never an error


def test_nan_values_are_left_out_and_counted(tmp_path):
    log, results = classification_run()
    log[2]["loss"] = float("nan")
    log[3]["learning_rate"] = float("inf")
    for record in log:
        if record["type"] == "eval" and record["step"] == 20:
            record["accuracy"] = float("nan")
    written = write_plots(tmp_path, log, results, "accuracy", family=CLS)
    assert [name for name, _ in written] == ["loss.png", "metric.png", "confusion_matrix.png"]
    assert_folder_matches(tmp_path, written)
    figs = built(log, results, "accuracy")
    top, bottom = figs["loss.png"].axes
    assert len(lines(top)["train"].get_xdata()) == 7 and len(bottom.lines[0].get_xdata()) == 7
    assert "1 NaN/inf value not shown" in top.get_title()
    ax = figs["metric.png"].axes[0]
    assert lines(ax)["validation"].get_xydata().tolist() == [[40, 0.85]] and "1 NaN/inf" in ax.get_title()


def test_all_nan_metric_and_matrix_skip_their_plots(tmp_path):
    log, results = classification_run()
    for record in log:
        record["accuracy"] = float("nan")
    results["test"]["confusion_matrix"]["matrix"][0][0] = float("nan")
    results["validation"]["confusion_matrix"]["matrix"][0][0] = float("nan")
    written = write_plots(tmp_path, log, results, "accuracy", family=CLS)
    assert [name for name, _ in written] == ["loss.png"]
    assert_folder_matches(tmp_path, written)


@pytest.mark.parametrize(("family", "broken"), [
    (CLS, {"confusion_matrix": {"labels": ["a", "b"], "matrix": [[1, 2], [3]]}}),  # ragged
    (CLS, {"confusion_matrix": {"labels": ["a", "b"], "matrix": [[1, 2, 3], [4, 5, 6]]}}),  # not square
    (CLS, {"confusion_matrix": {"labels": ["a"], "matrix": "oops"}}),
    (CLS, {"confusion_matrix": [[1, 2], [3, 4]]}),  # not a dict
    (NER, {"per_type": {"PER": {"precision": 0.5}, "LOC": "x"}}),  # no F1 anywhere
    (NER, {"per_type": [1, 2]}),
    (S2S, {"lengths": {"unit": "tokens", "generated": [[1], "x", [2, -1], [None, 3]], "reference": None}}),
    (S2S, {"lengths": [[1, 2]]}),
])
def test_malformed_results_skip_their_plot(tmp_path, family, broken):
    written = write_plots(tmp_path, train_records(), {"train": {}, "validation": {}, "test": broken}, "accuracy", family=family)
    assert [name for name, _ in written] == ["loss.png"]
    assert_folder_matches(tmp_path, written)


def test_a_test_split_that_is_not_a_dict_is_ignored(tmp_path):
    log, results = classification_run()
    written = write_plots(tmp_path, log, {**results, "test": ["oops"]}, "accuracy", family=CLS)
    assert [name for name, _ in written] == ["loss.png", "metric.png", "confusion_matrix.png"]  # from validation
    assert "validation split" in dict(written)["confusion_matrix.png"]


def test_records_without_steps_or_type_are_ignored(tmp_path):
    log = [{"loss": 1.0}, {"type": "train", "loss": 1.0}, {"type": "train", "step": "5", "loss": 1.0}, {"type": "eval", "accuracy": 0.5}]
    assert write_plots(tmp_path, log, {}, "accuracy") == []


def test_a_missing_label_list_falls_back_to_class_ids():
    ax = built([], {"test": {"confusion_matrix": {"matrix": [[3, 1], [0, 4]]}}}, "accuracy", family=CLS)["confusion_matrix.png"].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1"]


def test_partial_lengths_plot_what_is_there():
    ax = built([], {"validation": {"lengths": {"unit": "characters", "generated": [[5, 2], [6, 1]]}}}, "rougeL", family=S2S)["lengths.png"].axes[0]
    assert len(ax.containers) == 1 and ax.get_xlabel() == "length (characters)" and "(validation)" in ax.get_title()


def test_an_earlier_runs_plots_are_removed(tmp_path):
    log, results = classification_run()
    write_plots(tmp_path, log, results, "accuracy", family=CLS)
    (tmp_path / "notes.txt").write_text("mine")
    written = write_plots(tmp_path, *causal_lm_run(), "perplexity", greater_is_better=False, family=CLM)
    assert not (tmp_path / "confusion_matrix.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["notes.txt", *(name for name, _ in written)])  # other files stay


def test_a_users_own_png_in_plots_is_never_removed(tmp_path):
    """plots/ may hold a picture the user put there: a run replaces or removes only the names a
    run writes (the common plots and each family's PLOTS), whatever this run could draw."""
    (tmp_path / "my-diagram.png").write_bytes(b"\x89PNG mine")
    (tmp_path / "confusion_matrix.png").write_bytes(b"\x89PNG an earlier run's")
    written = write_plots(tmp_path, *causal_lm_run(), "perplexity", greater_is_better=False, family=CLM)
    assert (tmp_path / "my-diagram.png").read_bytes() == b"\x89PNG mine"
    assert not (tmp_path / "confusion_matrix.png").exists()  # some family's plot this run did not draw
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["my-diagram.png", *(name for name, _ in written)])


def test_each_family_draws_only_the_plots_it_declares():
    """The names a family's figures() passes to plots.named are its PLOTS (write_plots removes a
    stale plot by those names only)."""
    import ast
    import inspect

    from ftkit.tasks import families

    for name, family in families().items():
        source = inspect.getsource(family)
        tree = ast.parse(source)
        drawn = {
            ast.unparse(call.args[0]) for call in ast.walk(tree)
            if isinstance(call, ast.Call) and ast.unparse(call.func).endswith("named") and call.args
        }
        declared = {f"PLOTS[{i}]" for i in range(len(family.PLOTS))} | {repr(p) for p in family.PLOTS}
        assert drawn <= declared, (name, drawn, family.PLOTS)
        assert all(p.endswith(".png") for p in family.PLOTS)


# --- how it draws: no global state, light import


def test_import_is_light_and_plotting_never_touches_pyplot(tmp_path):
    probe = (
        "import sys\nfrom pathlib import Path\nimport ftkit.plots\n"
        "assert 'matplotlib' not in sys.modules, 'imported at module level'\n"
        f"ftkit.plots.write_plots(Path({str(tmp_path)!r}), [{{'type': 'train', 'step': 1, 'loss': 1.0}}], {{}}, 'accuracy')\n"
        "assert 'matplotlib' in sys.modules and 'matplotlib.pyplot' not in sys.modules, 'pyplot used'\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert_png(tmp_path / "loss.png")


def test_threads_plot_at_once_with_the_same_result(tmp_path):
    runs = [(classification_run, "accuracy", CLS), (ner_run, "f1", NER), (seq2seq_run, "rougeL", S2S)]
    for i, (run, primary, family) in enumerate(runs):
        write_plots(tmp_path / f"serial{i}", *run(), primary, family=family)
    errors = []

    def work(i: int, run, primary: str, family) -> None:
        try:
            write_plots(tmp_path / f"thread{i}", *run(), primary, family=family)
        except Exception as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i, *r)) for i, r in enumerate(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for i in range(len(runs)):
        serial = sorted((p.name, p.read_bytes()) for p in (tmp_path / f"serial{i}").iterdir())
        assert serial and serial == sorted((p.name, p.read_bytes()) for p in (tmp_path / f"thread{i}").iterdir())
