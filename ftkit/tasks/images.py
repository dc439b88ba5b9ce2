"""Image classification: any AutoModelForImageClassification checkpoint (ViT, DeiT, ConvNeXt,
EfficientNet, ...) with a new head sized to the data's labels.

Data: an image folder (`LABEL/*.png|jpg` under each split's folder, the `imagefolder`
convention), a csv/tsv/json/jsonl/parquet file whose image column holds paths (relative to the
file), or a Hub dataset with an image column. Every image is opened before training: a missing
or unreadable one is a one-line error naming it. Images are converted to RGB (grayscale, RGBA,
palette) as transformers' pipeline does, then preprocessed by the checkpoint's image processor.

Training images get a random resized crop and a horizontal flip (as transformers'
run_image_classification does; train.augment none turns it off), drawn from a generator seeded by
(train.seed, epoch, row): the loop tells the training features each epoch (Epochs.start_epoch), so
a run resumed mid-epoch draws the same crops as an uninterrupted one, whatever the loader fetched
ahead before the stop.

Labels, the loss, the metrics and the confusion-matrix plot are text classification's
(ftkit.tasks.classification): a class is a class, whatever the input.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ftkit.columns import Roles
from ftkit.config import DataConfig, RunConfig
from ftkit.data import Split
from ftkit.datafile import IMAGE_SUFFIXES
from ftkit.errors import FtkitError, first_line
from ftkit.tasks import calibration, classification
from ftkit.tasks.common import serves_any, wrong_classes
from ftkit.tasks.family import Prepared, Usage

# --- what it is
AUTO_MODEL = "AutoModelForImageClassification"
ARCHITECTURES = ("ForImageClassification",)  # a bare model folder's architecture: predict/evaluate tell the family by it
serves = serves_any  # ARCHITECTURES alone tell its models
PEFT_TASK = ""  # PEFT has no image task type: a plain PeftModel passes pixel_values through
NEW_HEAD = True  # the classifier is new: under LoRA it trains in full
CLASS_WEIGHTS = True  # train.class_weights: the loss weighs each class by its rarity
GGUF = False
ONNX = False  # image processors are not exported with the model yet
LONG_INPUTS = "truncated"  # no text: the data check's text checks do not apply
LOCAL_MODEL = "pass a local folder: --model /path/to/model (one save_pretrained wrote: an image classifier and its preprocessor_config.json)"

# --- data
STRATIFY = "label"  # carved splits keep the class balance
META_KEYS: tuple[str, ...] = ()
CONVENTIONAL_COLUMNS = {"image": "image", "label": "label"}  # what local files usually call them
COLUMN_KINDS = {"image": "text", "label": "labels"}  # an image column of a file holds paths: text
LOCAL_FOLDERS = True  # --train/--validation/--test may be image folders

# The loss, the evaluation and the metrics are those of text classification: logits over classes.
check_metric_keys = classification.check_metric_keys
training_loss = classification.training_loss
eval_outputs = classification.eval_outputs
compute_metrics = classification.compute_metrics
figures = classification.figures
PLOTS = classification.PLOTS
HUB_METRICS = classification.HUB_METRICS


def pipeline_tag(config: RunConfig) -> str:
    return "image-classification"


def columns(config: RunConfig) -> Roles:
    return Roles({"image": config.data.image_column, "label": config.data.label_column}, COLUMN_KINDS)


def normalizer(config: RunConfig) -> None:
    """Records are read as they are (read_local resolves the image paths)."""
    return None


def check_config(config: RunConfig) -> None:
    """Settings of the text families that mean nothing for images are refused, not ignored."""
    d = config.data
    for key, given in (("data.text_pair_column", d.text_pair_column), ("data.target_column", d.target_column), ("data.prefix", d.prefix)):
        if given:
            raise FtkitError(f"'{key}' does not apply to image classification; remove it")


def check_model(model_config: Any, config: RunConfig) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    if model_config.model_type not in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
        fits = ", ".join(t for t in ("vit", "deit", "convnext", "efficientnet", "swin", "resnet") if t in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES)
        raise FtkitError(f"model '{config.model}' is a '{model_config.model_type}' model, which cannot classify images. Use one that can ({fits}, ...)")


def load_processor(source: str) -> Any:
    """The checkpoint's image processor (resize, rescale, normalise as it was pretrained)."""
    from transformers import AutoImageProcessor

    from ftkit.models import POLICY

    try:
        return AutoImageProcessor.from_pretrained(source, trust_remote_code=POLICY.trust_remote_code)
    except (OSError, ValueError) as err:
        raise FtkitError(f"{source}: no image processor ({first_line(err)[:200]}); the folder needs the preprocessor_config.json of its checkpoint") from None


# ---------------------------------------------------------------------------------- reading images


def read_local(path: Path, config: RunConfig) -> Split:
    """An image folder (LABEL/IMAGE under `path`), or a table whose image column holds paths
    relative to it; every image opened once here, before training."""
    if path.is_dir():
        split = read_folder(path)
    else:
        from ftkit.data import read_columns

        split = read_columns(path, columns(config), config.data.encoding, config.data.format)
        split.columns["image"] = [_beside(value, path, row) for value, row in zip(split.columns["image"], split.rows)]
    check_images(split)
    return split


def read_folder(folder: Path) -> Split:
    """The imagefolder convention: each subfolder is a label, its images (any depth) its examples,
    in sorted order."""
    images, labels = [], []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for image in sorted(p for p in sub.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
            images.append(str(image))
            labels.append(sub.name)
    if not images:
        raise FtkitError(
            f"{folder}: no images in label subfolders; an image folder holds one folder per label with its images "
            f"({folder}/LABEL/*.png|jpg), or pass a csv/jsonl with an image-path column"
        )
    return Split({"image": images, "label": labels}, list(range(1, len(images) + 1)), str(folder))


def _beside(value: Any, table: Path, row: int) -> str:
    """An image path of a table's row, relative to the table's folder."""
    if not isinstance(value, str) or not value.strip():
        raise FtkitError(f"{table}: line/row {row}: the image column holds {str(value)[:40]!r}, not an image path (check --image-column)")
    return str(table.parent / Path(value).expanduser())


def check_images(split: Split) -> None:
    """Open every image of a split (paths; a Hub column's images are decoded already): the
    first that is missing or unreadable is refused by name."""
    for value, row in zip(split.columns["image"], split.rows):
        if isinstance(value, str):
            load_rgb(value, f" (line/row {row} of {split.source})" if not Path(split.source).is_dir() else "")
        elif value is None:
            raise FtkitError(f"{split.source}: line/row {row} has no image; fill it in or drop the row")


def load_rgb(image: Any, where: str = "") -> Any:
    """A PIL image in RGB from a path, a PIL image or a datasets Image dict, turned upright by its
    EXIF tag and converted (grayscale, RGBA, palette) as transformers' pipeline does."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(image, dict):  # datasets' Image feature undecoded: {"bytes", "path"}
        import io

        image = Image.open(io.BytesIO(image["bytes"])) if image.get("bytes") else image["path"]
    if isinstance(image, str):
        try:
            with Image.open(image) as opened:
                opened.load()
                return (ImageOps.exif_transpose(opened) or opened).convert("RGB")
        except FileNotFoundError:
            raise FtkitError(f"{image}: no such image{where}; fix the path or remove it") from None
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise FtkitError(f"{image}: not a readable image{where} ({first_line(err)[:120]}); replace or remove it") from None
    return (ImageOps.exif_transpose(image) or image).convert("RGB")


# ---------------------------------------------------------------------------------- features


def prepare(splits: dict[str, Split], config: RunConfig, processor: Any, names: list[str] | None = None) -> Prepared:
    """Labels to ids (as text classification does); the images stay as paths (or the Hub's
    images) until the collator reads them, batch by batch."""
    import datasets

    notes: list[str] = []
    by_index = names is not None  # a trained model's names are in id order
    if names is None:
        names, note = classification.label_names(splits["train"], config.data.labels)
        notes += [note] if note else []
        by_index = names == list(config.data.labels or [])
    features = {}
    for split_name, split in splits.items():
        ids = classification.encode(split, names, split_name, by_index)
        table = datasets.Dataset.from_dict({"image": split.columns["image"], "labels": ids})
        augment = split_name == "train" and config.train.augment != "none"
        features[split_name] = Epochs(table, config.train.seed if augment else None)
    return Prepared(features, names, notes)


def errors(gathered: dict[str, Any], prepared: Prepared, split: str) -> list[dict[str, Any]]:
    """Every wrongly classified image, most confident first: {"image" (its path; None for a Hub
    image without one), "gold", "predicted", "score"}. Only the wrong rows' images are read."""
    table = prepared.features[split].table
    return wrong_classes(gathered, prepared.names, lambda row: {"image": image_name(table[row]["image"])})


def image_name(image: Any) -> str | None:
    """Where an image came from: a path as the data gave it, a Hub image's file name, else None."""
    if isinstance(image, str):
        return image
    if isinstance(image, dict):  # an undecoded Hub image: {"path", "bytes"}
        return image.get("path")
    return getattr(image, "filename", None) or None  # a decoded PIL image keeps the file it was opened from


class Epochs:
    """A split's features as the loader reads them: each example with the seed of its crop
    (from train.seed, the epoch and its row), or none where nothing is augmented."""

    def __init__(self, table: Any, seed: int | None) -> None:
        self.table, self.seed, self.epoch = table, seed, 0

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):  # a whole column ("labels": class weights)
            return self.table[key]
        example = dict(self.table[key])
        # int tuples hash alike in every process and run (only str hashes are salted)
        example["crop_seed"] = None if self.seed is None else hash((self.seed, self.epoch, int(key))) & 0x7FFF_FFFF_FFFF_FFFF
        return example

    def select(self, rows: Any) -> "Epochs":
        return Epochs(self.table.select(rows), self.seed)


def load_model(source: str, prepared: Prepared, processor: Any, config: RunConfig) -> Any:
    from transformers import AutoModelForImageClassification

    from ftkit.models import load_pretrained

    names = prepared.names
    return load_pretrained(
        AutoModelForImageClassification, source, num_labels=len(names),
        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
        new_head=True,  # none in a base checkpoint, or another one (ImageNet's 1000 classes) replaced
    )


def target_size(processor: Any) -> tuple[int, int]:
    """(height, width) the processor makes of an image: a crop is drawn at that size."""
    size = processor.size
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    if get("height") and get("width"):
        return int(get("height")), int(get("width"))
    edge = get("shortest_edge") or get("longest_edge") or 224
    return int(edge), int(edge)


def crop_flip(image: Any, size: tuple[int, int], seed: int, scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Any:
    """torchvision's RandomResizedCrop(size) then RandomHorizontalFlip(), on a PIL image, drawn
    from a generator seeded with `seed`: a crop of a random share (`scale`) and aspect (`ratio`)
    of the image, resized to `size`; flipped left to right half the time."""
    import torch
    from PIL import Image

    rng = torch.Generator().manual_seed(seed)
    width, height = image.size
    area = width * height
    box = None
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(*scale, generator=rng))
        aspect = math.exp(float(torch.empty(1).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=rng)))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=rng))
            left = int(torch.randint(0, width - w + 1, (1,), generator=rng))
            box = (left, top, left + w, top + h)
            break
    if box is None:  # as torchvision: the whole image's centre, at the nearest allowed aspect
        w, h = (width, round(width / ratio[0])) if width / height < ratio[0] else (round(height * ratio[1]), height) if width / height > ratio[1] else (width, height)
        w, h = min(w, width), min(h, height)
        box = ((width - w) // 2, (height - h) // 2, (width - w) // 2 + w, (height - h) // 2 + h)
    image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR, box=box)
    if float(torch.rand(1, generator=rng)) < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image


def finalize(model: Any, prepared: Prepared, config: RunConfig, best: dict[str, Any]) -> dict[str, Any]:
    """--calibrate: temperature scaling, as text classification's (validation images are not augmented)."""
    if not config.train.calibrate:
        calibration.forget(model)
        return {}
    collate = collator(load_processor(config.model), None)  # the run's processor, loaded again: finalize is not handed it
    return calibration.calibrate(model, prepared, collate, config.train.eval_batch_size or 2 * config.train.batch_size)


def collator(processor: Any, pad_to_multiple_of: int | None) -> Any:
    """Examples {"image", "labels", "crop_seed"} -> {"pixel_values", "labels"}: each image read,
    cropped and flipped where it is a training one, then the processor's resize and normalisation."""
    import torch

    size = target_size(processor)

    def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
        images = [load_rgb(e["image"]) for e in examples]
        images = [image if e.get("crop_seed") is None else crop_flip(image, size, e["crop_seed"]) for image, e in zip(images, examples)]
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixels, "labels": torch.tensor([e["labels"] for e in examples], dtype=torch.long)}

    return collate


def lengths(features: Any) -> list[int]:
    """Every image becomes the same number of pixels: one length (batches stay random)."""
    return [1] * len(features)


def batch_size(batch: dict[str, Any]) -> int:
    return batch["pixel_values"].shape[0]


# ---------------------------------------------------------------------------------- predict


def predict_inputs(source: str | list[str], column: str | None, config: RunConfig | None, encoding: str) -> Iterator[dict[str, Any]]:
    """{"file", "image"} records in order: a folder's images (sorted, any depth), one image, a
    .txt list of paths (one a line, relative to the list) or stdin's, a table's image column
    (relative to the table), or the paths of --text."""
    if isinstance(source, list):
        yield from (_input(p, p) for p in source)
    elif source != "-" and Path(source).is_dir():
        found = sorted(p for p in Path(source).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not found:
            raise FtkitError(f"{source}: no images in this folder ({', '.join(IMAGE_SUFFIXES)})")
        yield from (_input(str(p), str(p)) for p in found)
    elif source != "-" and Path(source).suffix.lower() in IMAGE_SUFFIXES:
        yield _input(source, source)
    else:
        yield from _listed_inputs(source, column or (config.data.image_column if config else "image"), encoding)


def _listed_inputs(source: str, name: str, encoding: str) -> Iterator[dict[str, Any]]:
    """Image paths from the lines of a .txt file or stdin, or from a table's column `name`;
    relative ones are read from the file's folder (stdin's: the working folder)."""
    from ftkit.data import iter_records

    base = Path(".") if source == "-" else Path(source).parent
    plain = source == "-" or Path(source).suffix.lower() == ".txt"
    for row, record in iter_records(source, encoding):
        if plain:  # a list of paths, one a line
            if record["text"].strip():
                yield _input(record["text"].strip(), str(base / record["text"].strip()))
            continue
        if name not in record:
            raise FtkitError(f"{source}: line/row {row} has no column '{name}' (columns: {', '.join(record)[:200]}); pass --text-column with the image column")
        yield _input(str(record[name]), str(base / str(record[name])))


def _input(file: str, path: str) -> dict[str, Any]:
    """A record: `file` as given (the output names it so), `path` where it is read from."""
    if not Path(path).is_file():
        raise FtkitError(f"{path}: no such image; fix the path or remove it")
    return {"file": file, "image": path}


def input_size(record: dict[str, Any]) -> int:
    return 0  # every image is resized alike


def predict_defaults(options: Any, config: RunConfig) -> None:
    """Nothing comes from the run: the image processor saved with the model holds the sizes."""


def predictor(model: Any, processor: Any, options: Any) -> Any:
    """Input records -> {"file", "label", "score"} (and "top_k" with --top-k above 1)."""
    import torch

    def run(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        images = [load_rgb(r["image"]) for r in records]
        pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(model.device, model.dtype)
        with torch.inference_mode():
            probs = model(pixel_values=pixels).logits.float().softmax(-1)
        return classification.ranked([{"file": r["file"]} for r in records], probs, model.config.id2label, options.top_k or 1)

    return run


# ---------------------------------------------------------------------------------- model card


def describe(config: RunConfig, names: list[str]) -> str:
    return f"Classifies an image into one of: {', '.join(names)}." if names else "Classifies an image."


def data_columns(config: RunConfig) -> str:
    d: DataConfig = config.data
    if d.train and Path(d.train).is_dir():
        return "image folders (one subfolder per label)"
    return f"image column `{d.image_column}`, label column `{d.label_column}`"


def hub_metrics(config: RunConfig) -> list[str]:
    return list(HUB_METRICS)


def usage(config: RunConfig) -> Usage:
    return Usage("photo.jpg", inputs="images", eval_data="your-images/", limits=())  # the processor sizes images
