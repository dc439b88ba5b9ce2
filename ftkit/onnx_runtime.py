"""Running an ONNX export (`ftkit export RUN --format onnx`) in ONNX Runtime, in place of the
PyTorch model: `predict --runtime onnx` and export's own parity check.

`OnnxModel` quacks like the transformers model the family predictors call: `model(**encoded)`
returns an output with `.logits` (a torch tensor, also readable as `output["logits"]`, as the
pipelines read it), `.config` carries id2label and the rest, `.device` is the CPU. So every
exporting family's predictor runs unchanged and writes the same records.

The export folder (RUN/onnx/, see ftkit.export) is self-contained: the graph, the model's
config.json and the tokenizer, so it can be copied and served without the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftkit.errors import FtkitError

if TYPE_CHECKING:
    from ftkit.config import RunConfig
    from ftkit.tasks.family import Family

FOLDER = "onnx"  # RUN/onnx/, beside RUN/model/
# runtime -> the graph it runs; "torch" is the PyTorch model itself
RUNTIMES = {"torch": None, "onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
EXPORT_RECORD = "export.json"  # what was exported from which model files (checked before predicting)
PARITY = "parity.json"


def onnx_dir(model_dir: Path, run_config: RunConfig | None) -> Path:
    """Where a model folder's export lives: RUN/onnx/ beside a run's model/ (or adapter/), else
    MODEL/onnx/ inside a bare model folder (beside its files, which it never touches)."""
    if run_config is not None and model_dir.name in ("model", "adapter"):
        return model_dir.parent / FOLDER
    return model_dir / FOLDER


def model_stamp(files: list[Path]) -> str:
    """A digest of files' names, sizes and modification times: what an export was made from.
    Names, not paths: a run moved or copied with its times (mv, cp -a, rsync -a) keeps its export."""
    stamp = hashlib.sha256()
    for path in files:
        with contextlib.suppress(OSError):
            info = path.stat()
            stamp.update(f"{path.name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return stamp.hexdigest()


def graph_file(model_dir: Path, run_config: RunConfig | None, runtime: str) -> Path:
    """The .onnx file `runtime` runs, checked to be there and made from this model's files."""
    from ftkit.inference import files_read

    folder = onnx_dir(model_dir, run_config)
    graph = folder / str(RUNTIMES[runtime])
    run = folder.parent
    if run_config is None and not graph.is_file():
        raise FtkitError(f"{model_dir}: --runtime {runtime} runs a run's export; pass the run folder (after `ftkit export RUN --format onnx`)")
    if not graph.is_file():
        quantize = (" --quantize int8" if runtime == "onnx-int8" else "") + (" --overwrite" if folder.exists() else "")
        raise FtkitError(f"{graph}: no ONNX export there; run `ftkit export {run} --format onnx{quantize}` first")
    try:
        made_from = json.loads((folder / EXPORT_RECORD).read_text(encoding="utf-8"))["model files"]
    except (OSError, ValueError, KeyError, TypeError):
        made_from = None
    if made_from != model_stamp(files_read(model_dir)):  # a newer finetune into the same folder
        raise FtkitError(f"{folder} was exported from another version of {model_dir}; run `ftkit export {run} --format onnx --overwrite` again")
    return graph


def require() -> None:
    """onnx and onnxruntime are an extra: say how to install them, before any work."""
    import importlib.util

    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise FtkitError(f"ONNX export and --runtime onnx need {' and '.join(missing)}: pip install 'ftkit[onnx]'")


def threads() -> int:
    """The CPUs this process may use (its affinity: a container's or taskset's share, not the host's)."""
    with contextlib.suppress(AttributeError, OSError):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def session(path: Path) -> Any:
    """An ONNX Runtime session on the CPU, built once: every core this process may use within
    an operator, one operator at a time (a transformer's graph is a chain)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are not the user's
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxModel:
    """An ONNX Runtime session behind the interface the family predictors use (see module doc)."""

    training = False

    def __init__(self, path: Path, config: Any) -> None:
        import torch

        self.session = session(path)
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.config = config
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.path = path

    def __call__(self, **inputs: Any) -> Any:
        """Logits of a batch of model inputs (torch tensors); inputs the graph does not take are left out."""
        import numpy as np
        import torch
        from transformers.modeling_outputs import ModelOutput

        if "token_type_ids" in self.inputs and "token_type_ids" not in inputs and "input_ids" in inputs:
            inputs = {**inputs, "token_type_ids": torch.zeros_like(inputs["input_ids"])}  # what BERT-like models assume without them
        missing = [name for name in self.inputs if name not in inputs]
        if missing:
            raise FtkitError(f"{self.path} takes {', '.join(missing)}, which the tokenizer did not give; export the run again")
        feed = {name: np.ascontiguousarray(inputs[name].detach().cpu().numpy()) for name in self.inputs}
        (logits,) = self.session.run(["logits"], feed)
        return ModelOutput(logits=torch.from_numpy(logits))

    # What pipeline() and the training loop's evaluation call on a model: nothing to do here.
    def to(self, *args: Any, **kwargs: Any) -> OnnxModel:
        return self

    def eval(self) -> OnnxModel:
        return self

    def train(self, mode: bool = True) -> OnnxModel:
        return self

    def can_generate(self) -> bool:
        return False


def onnx_model(path: Path, config: Any) -> OnnxModel:
    """An OnnxModel whose class is named as the exported model's (BertForTokenClassification):
    pipeline() checks a model's class name against the task's models and logs an error otherwise."""
    name = (getattr(config, "architectures", None) or ["OnnxModel"])[0]
    return type(name, (OnnxModel,), {})(path, config)


def load(model_dir: Path, run_config: RunConfig | None, runtime: str) -> tuple[Family, OnnxModel, Any]:
    """(task family, the export as a model, its tokenizer) for `predict --runtime onnx[-int8]`."""
    from transformers import AutoConfig

    from ftkit.inference import task_of
    from ftkit.models import quiet_transformers

    quiet_transformers()
    graph = check(model_dir, run_config, runtime)
    task = task_of(model_dir, run_config)
    config = AutoConfig.from_pretrained(str(graph.parent))
    return task, onnx_model(graph, config), task.load_processor(str(graph.parent))


def check(model_dir: Path, run_config: RunConfig | None, runtime: str) -> Path:
    """Before anything is read or written: the family exports, and the export is there and
    current. Returns the graph `runtime` runs."""
    from ftkit.errors import closest
    from ftkit.inference import task_of

    if runtime not in RUNTIMES:
        raise FtkitError(f"--runtime must be one of {', '.join(RUNTIMES)}, got '{runtime}'.{closest(runtime, list(RUNTIMES))}")
    require()
    if not task_of(model_dir, run_config).ONNX:
        raise FtkitError(f"--runtime {runtime}: {exportable_note()}; use the default --runtime torch")
    return graph_file(model_dir, run_config, runtime)


def exportable_note() -> str:
    """Which families export, for the refusal of one that does not."""
    from ftkit.tasks import families

    names = [name for name, task in families().items() if task.ONNX]
    return f"ONNX export is available for {', '.join(names)} models only (generation and image models: not yet)"
