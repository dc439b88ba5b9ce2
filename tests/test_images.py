"""Image classification end to end on a tiny random ViT and small PNGs written here: finetune on
image folders (and on a jsonl of relative image paths), metrics that predict's labels give,
predict over a folder in input order, pipeline("image-classification") agreeing, grayscale /
RGBA / palette images read as RGB, and a missing image refused in one line before training."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from conftest import build_vit, call

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}
SIZE = 32  # the tiny ViT's image_size; the PNGs are 24 or 40 pixels: the processor resizes them
COUNTS = {"train": 12, "validation": 4, "test": 4}  # images per class


def write_image(path: Path, colour: tuple[int, int, int], rng: random.Random, mode: str = "RGB", side: int = 24) -> Path:
    """A noisy square of `colour`, saved as PNG in `mode` (L, RGBA, P: read back as RGB)."""
    from PIL import Image

    pixels = [tuple(max(0, min(255, c + rng.randint(-30, 30))) for c in colour) for _ in range(side * side)]
    image = Image.new("RGB", (side, side))
    image.putdata(pixels)
    if mode == "RGBA":
        image = image.convert("RGBA")
    elif mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """train/validation/test image folders (LABEL/NNN.png); a few training images are grayscale,
    RGBA or palette PNGs, and some are 40 pixels wide."""
    root = tmp_path_factory.mktemp("images")
    rng = random.Random(0)
    modes = ["RGB", "RGB", "RGBA", "P", "RGB", "RGB"]
    for split, n in COUNTS.items():
        for label, colour in COLOURS.items():
            for i in range(n):
                mode = modes[i % len(modes)] if split == "train" else "RGB"
                write_image(root / split / label / f"{i:03d}.png", colour, rng, mode, side=40 if i % 3 == 0 else 24)
    return {split: root / split for split in COUNTS}


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory) -> Path:
    return build_vit(tmp_path_factory.mktemp("tiny-vit"), SIZE)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, tiny_vit) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "colours.yaml"
    path.write_text(f"""\
# ftkit finetune colours.yaml --train train/ --validation validation/ --test test/
name: colours
task: image-classification
model: {tiny_vit}
train:
  epochs: 6
  batch_size: 6
  learning_rate: 3.0e-3
  warmup_ratio: 0.0
  seed: 0
  logging_steps: 1
""", encoding="utf-8")
    return path


def finetune(recipe: Path, folders: dict[str, Path], out: Path, *extra) -> list[str]:
    return ["finetune", str(recipe), "--train", str(folders["train"]), "--validation", str(folders["validation"]),
            "--test", str(folders["test"]), "-o", str(out), "--quiet", *map(str, extra)]


@pytest.fixture(scope="module")
def run(recipe, folders, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("image-run") / "run"
    assert call(finetune(recipe, folders, out)) == 0
    return out


def metrics_of(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text(encoding="utf-8"))


def predicted(cli, run: Path, source: Path, tmp_path: Path, *extra) -> list[dict]:
    out_file = tmp_path / "predictions.jsonl"
    code, _, err = cli("predict", run, source, "--output", out_file, "--overwrite", *extra)
    assert code == 0, err
    return [json.loads(line) for line in out_file.read_text(encoding="utf-8").splitlines()]


def test_learns_the_colours_and_reports_class_metrics(run):
    """A colour is easy: the tiny ViT learns it; metrics are text classification's (accuracy,
    macro F1, per class, confusion matrix) with its plot, and the card is an image classifier's."""
    test = metrics_of(run)["test"]
    assert test["samples"] == 12
    assert test["accuracy"] >= 0.9, test
    assert set(test["per_class"]) == set(COLOURS) and "f1" in test
    assert (run / "model" / "plots" / "confusion_matrix.png").is_file() or (run / "plots" / "confusion_matrix.png").is_file()
    model_config = json.loads((run / "model" / "config.json").read_text(encoding="utf-8"))
    assert sorted(model_config["id2label"].values()) == sorted(COLOURS)
    assert (run / "model" / "preprocessor_config.json").is_file()
    card = (run / "model" / "README.md").read_text(encoding="utf-8")
    assert "pipeline_tag: image-classification" in card and "Classifies an image into one of: blue, green, red." in card
    # in an image model's terms: no token length (the processor sizes images), images to evaluate on
    assert "max_length" not in card and "numbers on images like that data" in card and "--data your-images/" in card


def test_predict_over_a_folder_in_order_agrees_with_metrics_and_pipeline(run, folders, cli, tmp_path):
    """One {"file", "label", "score"} line per image, in sorted order; their accuracy is the test
    metric, and pipeline("image-classification") gives the same labels and scores."""
    from transformers import pipeline

    files = sorted(str(p) for p in folders["test"].rglob("*.png"))
    rows = predicted(cli, run, folders["test"], tmp_path, "--batch-size", "5")
    assert [r["file"] for r in rows] == files and all(list(r) == ["file", "label", "score"] for r in rows)
    gold = [Path(f).parent.name for f in files]
    accuracy = sum(r["label"] == g for r, g in zip(rows, gold)) / len(gold)
    assert accuracy == pytest.approx(metrics_of(run)["test"]["accuracy"])
    pipe = pipeline("image-classification", model=str(run / "model"))
    from_pipe = [top[0] for top in pipe(files)]
    assert [p["label"] for p in from_pipe] == [r["label"] for r in rows]
    assert [p["score"] for p in from_pipe] == pytest.approx([r["score"] for r in rows], abs=1e-4)


def test_grayscale_rgba_and_palette_images_are_read_as_rgb(run, cli, tmp_path):
    rng = random.Random(5)
    paths = [write_image(tmp_path / "in" / f"{mode}.png", COLOURS["green"], rng, mode) for mode in ("L", "RGBA", "P", "LA")]
    rows = predicted(cli, run, tmp_path / "in", tmp_path, "--top-k", "2")
    assert [r["file"] for r in rows] == sorted(str(p) for p in paths)
    assert all(len(r["top_k"]) == 2 for r in rows)
    assert [r["label"] for r in rows if not r["file"].endswith("L.png")] == ["green"] * 3  # colour kept (L is grey)


def test_a_jsonl_of_relative_image_paths_trains(recipe, folders, cli, tmp_path):
    """A table whose image column holds paths relative to it, as --train (validation carved)."""
    table = tmp_path / "data" / "train.jsonl"
    table.parent.mkdir()
    (tmp_path / "data" / "pictures").symlink_to(folders["train"])  # the paths below are relative to the table
    rows = [{"picture": f"pictures/{p.parent.name}/{p.name}", "label": p.parent.name} for p in sorted(folders["train"].rglob("*.png"))]
    table.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    code, out, err = cli("finetune", recipe, "--train", table, "--image-column", "picture", "--max-steps", "2", "-o", tmp_path / "run", "--quiet")
    assert code == 0, err
    assert metrics_of(tmp_path / "run")["validation"]["samples"] == 4  # 10% of 36 carved


def test_a_missing_image_is_refused_in_one_line_before_training(recipe, folders, cli, tmp_path):
    table = tmp_path / "train.csv"
    first = sorted(folders["train"].rglob("*.png"))[0]
    table.write_text(f"image,label\n{first},red\nnowhere/gone.png,blue\n", encoding="utf-8")
    code, out, err = cli("finetune", recipe, "--train", table, "-o", tmp_path / "run")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "gone.png: no such image (line/row 3 of" in lines[0], err
    assert not (tmp_path / "run").exists()


def test_an_unreadable_image_in_a_folder_is_refused_by_name(recipe, folders, cli, tmp_path):
    import shutil

    train = tmp_path / "train"
    shutil.copytree(folders["train"], train)
    (train / "red" / "broken.png").write_bytes(b"not a png at all")
    code, out, err = cli("finetune", recipe, "--train", train, "-o", tmp_path / "run")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{train / 'red' / 'broken.png'}: not a readable image" in err
    assert not (tmp_path / "run").exists()


STOP_AT = 8  # inside the second epoch (6 steps each), between its checkpoints
TIMING_KEYS = {"runtime_s", "samples_per_second", "eval_runtime_s"}


def test_stopped_run_resumes_to_the_uninterrupted_weights(run, recipe, folders, cli, tmp_path, monkeypatch):
    """Augmentation is on: a run stopped mid-epoch (SIGINT at step STOP_AT, raised by the loss)
    and resumed draws the same crops and flips as the uninterrupted run, and ends with its
    metrics and weights."""
    import signal

    from safetensors.torch import load_file

    from ftkit.tasks import images
    from ftkit.tasks.family import Loss

    def stopping(prepared, config):
        loss, calls = images.classification.training_loss(prepared, config), []

        def compute(forward, batch):
            calls.append(1)
            if len(calls) == STOP_AT:
                signal.raise_signal(signal.SIGINT)
            return loss.compute(forward, batch)

        return Loss(compute)

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(images, "training_loss", stopping)
        code, _, err = cli(*finetune(recipe, folders, out))
    assert code == 130 and f"stopped by SIGINT at step {STOP_AT}" in err, err
    code, _, err = cli(*finetune(recipe, folders, out, "--resume"))
    assert code == 0, err
    strip = lambda m: {**m, "train": {k: v for k, v in m["train"].items() if k not in TIMING_KEYS}}  # noqa: E731
    assert strip(metrics_of(out)) == strip(metrics_of(run))
    resumed, whole = (load_file(str(r / "model" / "model.safetensors")) for r in (out, run))
    assert resumed.keys() == whole.keys() and all(bool((resumed[k] == whole[k]).all()) for k in whole)


def test_augmentation_changes_training_and_can_be_turned_off(recipe, folders, cli, tmp_path):
    """--augment none trains on the images as they are: other weights than crop-flip's."""
    from safetensors.torch import load_file

    weights = {}
    for mode in ("crop-flip", "none"):
        code, _, err = cli(*finetune(recipe, folders, tmp_path / mode, "--augment", mode, "--max-steps", "3"))
        assert code == 0, err
        weights[mode] = load_file(str(tmp_path / mode / "model" / "model.safetensors"))
    assert any(not bool((weights["none"][k] == weights["crop-flip"][k]).all()) for k in weights["none"])


def test_lora_trains_and_the_adapter_predicts(recipe, folders, cli, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "lora"
    code, _, err = cli(*finetune(recipe, folders, out, "--lora", "--merge", "--lora-r", "4", "--max-steps", "4"))
    assert code == 0, err
    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert any("lora_A" in k for k in adapter) and any("classifier" in k for k in adapter)  # the new head trains in full
    from_adapter = predicted(cli, out / "adapter", folders["test"], tmp_path)
    from_model = predicted(cli, out, folders["test"], tmp_path)
    assert [r["label"] for r in from_adapter] == [r["label"] for r in from_model]
    assert [r["score"] for r in from_adapter] == pytest.approx([r["score"] for r in from_model], abs=1e-5)


def test_evaluate_on_an_image_folder_gives_the_test_metrics(run, folders, cli, tmp_path):
    out_file = tmp_path / "eval.json"
    code, _, err = cli("evaluate", run, "--data", folders["test"], "--output", out_file)
    assert code == 0, err
    scored, test = json.loads(out_file.read_text(encoding="utf-8")), metrics_of(run)["test"]
    assert scored["samples"] == test["samples"] == 12
    assert scored["accuracy"] == pytest.approx(test["accuracy"]) and scored["loss"] == pytest.approx(test["loss"], rel=1e-4)


def test_a_bare_model_folder_predicts_by_its_architecture(run, folders, cli, tmp_path):
    """model/ alone (no config.yaml beside it) is told an image classifier by its architecture."""
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(run / "model", bare)
    rows = predicted(cli, bare, folders["test"], tmp_path)
    assert rows == predicted(cli, run, folders["test"], tmp_path)


def test_predict_reads_a_list_file_one_image_and_a_table_column(run, folders, cli, tmp_path):
    """A .txt list of paths (relative to it), one image path, and a jsonl's image column give the
    same lines, each naming the file as the input wrote it."""
    files = sorted(folders["test"].rglob("*.png"))[:5]
    by_folder = {r["file"]: r for r in predicted(cli, run, folders["test"], tmp_path)}
    listing = folders["test"].parent / "list.txt"
    listing.write_text("".join(f"{p.relative_to(listing.parent)}\n" for p in files) + "\n", encoding="utf-8")
    rows = predicted(cli, run, listing, tmp_path)
    assert [r["file"] for r in rows] == [str(p.relative_to(listing.parent)) for p in files]
    assert [r["label"] for r in rows] == [by_folder[str(p)]["label"] for p in files]
    one = predicted(cli, run, files[0], tmp_path)
    assert one == [by_folder[str(files[0])]]
    table = tmp_path / "inputs.jsonl"
    table.write_text("".join(json.dumps({"image": str(p)}) + "\n" for p in files), encoding="utf-8")
    assert [r["label"] for r in predicted(cli, run, table, tmp_path)] == [r["label"] for r in rows]
    code, _, err = cli("predict", run, tmp_path / "nowhere.png")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nowhere.png" in err


def test_a_dataset_with_an_image_column_trains(recipe, folders, cli, tmp_path, monkeypatch):
    """A `datasets` dataset whose image column holds images (as the Hub's do) and whose labels are
    a ClassLabel: read through --dataset (here a local folder of parquet splits, offline)."""
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = tmp_path / "hub-like"
    features = datasets.Features({"img": datasets.Image(), "labels": datasets.ClassLabel(names=sorted(COLOURS))})
    for split in ("train", "validation"):
        files = sorted(folders[split].rglob("*.png"))
        table = datasets.Dataset.from_dict({"img": [str(p) for p in files], "labels": [sorted(COLOURS).index(p.parent.name) for p in files]}, features=features)
        (root / "data").mkdir(parents=True, exist_ok=True)
        table.to_parquet(str(root / "data" / f"{split}-00000-of-00001.parquet"))
    code, _, err = cli("finetune", recipe, "--dataset", root, "--image-column", "img", "--label-column", "labels", "--set", "test_split=null",
                       "--max-steps", "2", "-o", tmp_path / "run", "--quiet")
    assert code == 0, err
    model_config = json.loads((tmp_path / "run" / "model" / "config.json").read_text(encoding="utf-8"))
    assert sorted(model_config["id2label"].values()) == sorted(COLOURS)


def test_reproduce_checks_the_recipes_bars(recipe, folders, cli, tmp_path):
    """`ftkit reproduce` on an image recipe: exit 0 when every expect: bar holds, 1 naming the
    bar when one fails (accuracy cannot exceed 1)."""
    code, _, err = cli("reproduce", *finetune(recipe, folders, tmp_path / "ok", "--max-steps", "2", "--set", "expect.accuracy=>= 0.0")[1:])
    assert code == 0, err
    code, out, err = cli("reproduce", *finetune(recipe, folders, tmp_path / "bar", "--max-steps", "2", "--set", "expect.accuracy=> 1.0")[1:])
    assert code == 1 and "accuracy" in out + err, (out, err)
    assert json.loads((tmp_path / "bar" / "metrics.json").read_text(encoding="utf-8"))["test"]["accuracy"] <= 1.0
