"""The output folder contract.

    OUT/
      .ftkit-run.json the marker, written first: the folder is an ftkit run's (see ftkit.rundir)
      model/          save_pretrained model + tokenizer (safetensors) + README.md model card
                      (+ plots/ it shows); loads with transformers.pipeline(TASK, model="OUT/model").
                      A LoRA run writes it with --merge only.
      adapter/        LoRA runs: the PEFT adapter, tokenizer and card (see ftkit.lora)
      plots/          PNGs: loss and learning rate, the recipe's metric per evaluation, and per
                      family a confusion matrix, entity F1 bars or generated/reference lengths
      metrics.json    {"train": {...}, "validation": {...}, "test": {...}}
      errors.jsonl    the test split's rows the model got wrong (the validation split's when the run has
                      no test split), worst first, beside their inputs: the family's errors()
      config.yaml     the fully resolved config: `ftkit finetune OUT/config.yaml` reruns the run
      log.jsonl       one JSON object per logging step and per evaluation
      tensorboard/    with --report-to tensorboard: the event files

`model/`, `adapter/`, `errors.jsonl` and `metrics.json` appear only complete: each is written under a temporary
name and renamed into place. Reading a run folder back (which entries are a run's, its model
folder) is ftkit.runfiles.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ftkit.config import RunConfig
from ftkit.errors import FtkitError
from ftkit.models import max_positions
from ftkit.runfiles import CONFIG_HEADER
from ftkit.writes import replace_text, replace_whole, run_tmp

ERRORS = "errors.jsonl"  # the run's wrong rows (see the layout above; ftkit.runfiles lists it as a run's)


class JsonlLog:
    """Appends one JSON object per line, flushed, so a crashed run keeps its history."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, default=float) + "\n")
        except OSError as err:  # a full disk mid-training: one line, and the way back in
            out = self.path.parent
            raise FtkitError(
                f"{self.path}: cannot write the training log ({err.strerror or err}); free space, then run the same "
                f"command again (with --resume {out} if {out / 'checkpoints'} holds a checkpoint)", exit_code=1,
            ) from None


def write_json(path: Path, data: Any) -> None:
    """Write JSON under a temporary name, then rename: readers never see half a file."""
    replace_text(path, json.dumps(data, indent=2, default=float) + "\n")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """One JSON object per line, written under a temporary name, then renamed: never half a file."""

    def fill(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False, default=float) + "\n")

    replace_whole(path, fill)


def save_config(path: Path, config: RunConfig) -> None:
    import yaml

    header = f"{CONFIG_HEADER}. Rerun it with: ftkit finetune {path}\n"  # CONFIG_HEADER: how rundir tells a run's config
    replace_text(path, header + yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True))


def save_run(out: Path, model: Any, tokenizer: Any, config: RunConfig, results: dict, command: str, pipeline_tag: str,
             errors: list[dict[str, Any]] | None = None) -> None:
    """Write plots/, model/ and (LoRA) adapter/ (each atomically, with its card), config.yaml,
    errors.jsonl (`errors`, unless None) and metrics.json. `model` is a PEFT model when config.lora.enabled."""
    from ftkit import card, lora

    plots = write_plots(out, config, results)
    limit = max_positions(model.config)
    # else pipeline() may feed more than it reads; an image or speech processor has no such length
    if limit and getattr(tokenizer, "model_max_length", 0) > limit:
        tokenizer.model_max_length = limit
    if config.lora.enabled:
        adapter_card = card.render(config, results, command, pipeline_tag, plots, adapter=True)
        _write_folder(out, "adapter", lambda tmp: lora.save_adapter(tmp, model, tokenizer, lora.base_source(config.model)), adapter_card)
        model = model.merge_and_unload() if config.lora.merge else None  # merged once the adapter is safe on disk
    if model is not None:
        model_card = card.render(config, results, command, pipeline_tag, plots)

        def save_model(tmp: Path) -> None:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)

        _write_folder(out, "model", save_model, model_card)
    save_config(out / "config.yaml", config)
    if errors is not None:
        write_jsonl(out / ERRORS, errors)
    write_json(out / "metrics.json", results)  # last: a run with metrics.json is complete (ftkit.rundir)


def _write_folder(out: Path, name: str, fill: Any, readme: str) -> None:
    """out/name written as out/name.tmp by `fill`, with README.md and the plots, then renamed;
    any library's write error, or Ctrl-C, leaves nothing half-written behind."""

    def fill_all(tmp: Path) -> None:
        fill(tmp)
        (tmp / "README.md").write_text(readme, encoding="utf-8")
        if (out / "plots").is_dir():  # the card shows them: the folder must carry them to the Hub
            shutil.copytree(out / "plots", tmp / "plots")

    replace_whole(out / name, fill_all, tmp=run_tmp(out / name))


def write_plots(out: Path, config: RunConfig, results: dict) -> list[tuple[str, str]]:
    """OUT/plots/*.png from log.jsonl and the metrics; [(file, caption)]. A plotting failure
    warns and costs the plots, never the trained model."""
    import sys

    from ftkit import plots
    from ftkit.runs import read_log
    from ftkit.tasks import get_task

    try:
        log = read_log(out / "log.jsonl")
        m = config.metrics
        return plots.write_plots(out / "plots", log, results, m.primary, m.greater_is_better, get_task(config.task))
    except OSError:
        raise
    except Exception as err:  # a bug in plotting: the run's real results still get saved
        print(f"warning: plots not written ({type(err).__name__}: {err})", file=sys.stderr)
        return []

