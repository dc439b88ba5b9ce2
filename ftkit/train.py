"""THE training recipe: one Accelerate loop for every task family, read top to bottom.

finetune: setup (checks, data, processor, model, loaders, optimizer) -> train (ftkit.loop:
epochs of steps with validation, best-model tracking and checkpoints) -> test -> save. The
task family module supplies the parts that differ (features, model class, loss, what to
gather, metrics); nothing here knows which family it runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftkit import artifacts, checkpoints, lora, writes
from ftkit.batching import LengthGroupedBatches
from ftkit.config import RunConfig
from ftkit.config_load import flatten
from ftkit.data import load_splits
from ftkit.errors import FtkitError
from ftkit.loop import Run
from ftkit.models import check_weights, freeze_unsaved, load_model_config, model_source, quiet_transformers
from ftkit.progress import Reporter
from ftkit.tasks import get_task

if TYPE_CHECKING:
    from ftkit.config import TrainConfig
    from ftkit.tasks.family import Family, Prepared


def resolve_precision(requested: str) -> str:
    """'auto' -> bf16 on GPUs that support it, else no; fp16 needs a CUDA GPU."""
    import torch

    cuda = torch.cuda.is_available()
    if requested == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    if requested == "fp16" and not cuda:
        raise FtkitError("--mixed-precision fp16 needs a CUDA GPU; use 'no' (or 'bf16') on this machine")
    return requested


def finetune(config: RunConfig, out: Path, reporter: Reporter, command: str, resume: Path | None = None,
             accepted: Callable[[], None] | None = None) -> dict[str, Any]:
    """Fine-tune `config.model` on the recipe's data; write the run folder `out`; return metrics.

    resume: a checkpoint folder to continue from; the result equals an uninterrupted run's.
    accepted: called on the main process once every input is accepted, before anything is
    written: it makes `out` (or clears the earlier run there).
    """
    run = setup(config, out, reporter, resume, accepted)
    if resume is not None:  # weights, optimizer, scheduler and RNG states come from the checkpoint
        run.resume(resume)
    run.start()
    run.train(command)  # epochs of steps, validating and saving checkpoints on the way
    run.finish()  # the last validation; the best weights back in the model
    # what the model carries beyond its weights (thresholds, a target scale), before test and save
    settled = run.task.finalize(run.accelerator.unwrap_model(run.model), run.prepared, config, run.state.best_metrics or {})
    results: dict[str, Any] = {"train": {**train_results(run), **settled}, "validation": run.state.best_metrics}
    if "test" in run.eval_dls:
        results["test"] = run.test()
    else:  # errors.jsonl lists the validation split's rows then (save's note says so)
        run.list_errors("validation")
    run.accelerator.wait_for_everyone()
    save(run, results, command)
    close(run)
    return results


# --- setup: every check that can fail runs before the first expensive step

def setup(config: RunConfig, out: Path, reporter: Reporter, resume: Path | None, accepted: Callable[[], None] | None) -> Run:
    """Check the inputs, read the data, make the features, the model, the loaders and the
    optimizer: everything the loop needs, prepared by accelerate."""
    from accelerate.utils import set_seed

    t, task = config.train, get_task(config.task)
    quiet_transformers()
    source = checked_source(config, task)
    splits = load_splits(config.data, task.columns(config), t.seed, task.STRATIFY, task.normalizer(config),
                         lambda path: task.read_local(path, config), task.LOCAL_FOLDERS)
    for split in splits.values():
        _say(reporter, split.notes)
    processor = task.load_processor(config.model)
    from ftkit.datacheck import summary  # `ftkit data check` in one line; a note, never an error

    reporter.note(summary(splits, config, processor))
    trackers = t.trackers()
    accelerator, precision = make_accelerator(config, out, trackers)
    reporter.main_process = accelerator.is_main_process
    set_seed(t.seed)  # before the model: a new head's initial weights follow from the seed
    with accelerator.main_process_first():  # tokenize once; other ranks wait, then reuse
        prepared = task.prepare(_limit(splits, config, reporter), config, processor)
    task.check_metric_keys(config, prepared.names)
    _say(reporter, prepared.notes)
    model = make_model(task, source, prepared, processor, config)
    # Every input is accepted now (data, processor, weights): only now may the run folder be made,
    # or --overwrite clear the earlier run. --resume keeps its config.yaml: it compared it.
    if accelerator.is_main_process and resume is None:
        accept(out, config, accepted)
    trainable, parameters = lora.parameter_counts(model)
    if config.lora.enabled:
        reporter.note(f"LoRA r={config.lora.r}, alpha={config.lora.alpha}: {trainable:,} of {parameters:,} parameters train ({100 * trainable / parameters:.2f}%)")
    loss = task.training_loss(prepared, config)
    _say(reporter, loss.notes)
    train_dl, eval_dls, shuffle = make_loaders(task, prepared, processor, config, accelerator, precision, reporter)
    plan = make_plan(len(train_dl), t, accelerator.num_processes, precision)
    model, optimizer, scheduler = make_optimizer(model, accelerator, plan, t)
    forward = compiled(model, t.compile)  # the training step only: evaluation and generate() stay eager
    if trackers:  # only the main process logs; the config is what the run was asked to do
        accelerator.init_trackers(config.name, config=tracker_config(config), init_kwargs={"wandb": {"name": out.name}, "mlflow": {"run_name": out.name}})
    return Run(config=config, out=out, reporter=reporter, accelerator=accelerator, task=task, processor=processor, prepared=prepared,
               model=model, forward=forward, optimizer=optimizer, scheduler=scheduler, loss=loss, train_dl=train_dl, eval_dls=eval_dls,
               shuffle=shuffle, plan=plan, precision=precision, parameters=(trainable, parameters), evaluator=run_evaluation)


def checked_source(config: RunConfig, task: Family) -> str:
    """Where the model comes from, once its weights' format and its config fit the run."""
    source = model_source(config.model, task)  # the family says what a missing model's advice is
    check_weights(source)  # refuse pickle-only weights before any data is read
    task.check_model(load_model_config(config.model), config)
    return source


def make_accelerator(config: RunConfig, out: Path, trackers: list[str]) -> tuple[Any, str]:
    """The Accelerator (and its mixed precision) of this process."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration

    t = config.train
    precision = resolve_precision(t.mixed_precision)
    if torch.cuda.is_available():  # TF32 tensor cores for what runs in fp32 (bf16 autocast covers most)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    accelerator = Accelerator(
        mixed_precision=precision, gradient_accumulation_steps=t.gradient_accumulation_steps,
        dataloader_config=DataLoaderConfiguration(non_blocking=True),  # with pinned memory: async copies
        log_with=trackers or None, project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "tensorboard")),
    )
    return accelerator, precision


def make_model(task: Family, source: str, prepared: Prepared, processor: Any, config: RunConfig) -> Any:
    """The family's model for these labels; under LoRA, wrapped with its adapters."""
    model = task.load_model(source, prepared, processor, config)
    freeze_unsaved(model)  # else the saved model would differ from the one scored
    return lora.wrap(model, config) if config.lora.enabled else model


def accept(out: Path, config: RunConfig, accepted: Callable[[], None] | None) -> None:
    """Make the run folder (the caller's `accepted`) and write its config.yaml."""
    if accepted is not None:
        accepted()
    try:
        artifacts.save_config(out / "config.yaml", config)
    except OSError as err:
        raise FtkitError(f"{out}: cannot write config.yaml ({err.strerror or err}); free space or fix permissions, then run again", exit_code=1) from None


def make_loaders(task: Family, prepared: Prepared, processor: Any, config: RunConfig, accelerator: Any, precision: str,
                 reporter: Reporter) -> tuple[Any, dict[str, Any], Any]:
    """(training loader, {split: evaluation loader}, the generator that shuffles training), prepared."""
    import torch
    from torch.utils.data import DataLoader

    t = config.train
    # Tensor cores want lengths that are multiples of 8 under mixed precision; CUDA graphs want
    # few distinct shapes: lengths padded to multiples of 32 give max_length / 32 of them.
    # pad_to_max_length: inputs are cut at max_length, so a multiple of it is exactly max_length.
    multiple = t.max_length if t.pad_to_max_length else 32 if t.compile == "reduce-overhead" else 8 if precision != "no" else None
    collate = task.collator(processor, multiple)
    shuffle = torch.Generator().manual_seed(t.seed)
    pin = accelerator.device.type == "cuda"  # pinned host memory: copies to the GPU overlap compute
    train_features = prepared.features["train"]
    if t.group_by_length:  # same batch size and count, far less padding
        batches = LengthGroupedBatches(task.lengths(train_features), t.batch_size, shuffle)
        train_dl = DataLoader(train_features, batch_sampler=batches, collate_fn=collate, generator=shuffle, pin_memory=pin)
    else:
        train_dl = DataLoader(train_features, batch_size=t.batch_size, shuffle=True, collate_fn=collate, generator=shuffle, pin_memory=pin)
    eval_size = t.eval_batch_size or 2 * t.batch_size
    eval_dls = {s: DataLoader(f, batch_size=eval_size, collate_fn=collate, pin_memory=pin) for s, f in _eval_features(prepared, t, reporter).items()}
    train_dl, *eval_list = accelerator.prepare(train_dl, *eval_dls.values())
    return train_dl, dict(zip(eval_dls, eval_list)), shuffle


def _eval_features(prepared: Prepared, t: TrainConfig, reporter: Reporter) -> dict[str, Any]:
    """The validation and test features; validation cut to train.eval_max_samples rows."""
    features = {s: prepared.features[s] for s in ("validation", "test") if s in prepared.features}
    if t.eval_max_samples and len(features["validation"]) > t.eval_max_samples:
        # Generation is slow: score the first rows while training; the test split uses every row.
        features["validation"] = features["validation"].select(range(t.eval_max_samples))
        reporter.note(f"validation during training: the first {t.eval_max_samples} rows (train.eval_max_samples)")
    return features


def make_plan(batches: int, t: TrainConfig, processes: int, precision: str) -> checkpoints.Plan:
    """The run's length in optimizer steps; `batches`: this process's training batches per epoch."""
    # Steps are optimizer steps. The prepared loader holds this process's share of batches; the
    # last accumulation window of an epoch steps even when short (accelerate syncs at the end).
    steps_per_epoch = math.ceil(batches / t.gradient_accumulation_steps)
    total_steps = t.max_steps or steps_per_epoch * t.epochs
    epochs = math.ceil(total_steps / steps_per_epoch)
    # fp16: the scheduler skips steps whose gradients overflowed, so a resume cannot check it exactly
    return checkpoints.Plan(total_steps, steps_per_epoch, epochs, batches, t.gradient_accumulation_steps, processes, precision != "fp16")


def make_optimizer(model: Any, accelerator: Any, plan: checkpoints.Plan, t: TrainConfig) -> tuple[Any, Any, Any]:
    """(model, AdamW, linear warm-up schedule), prepared together."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(_param_groups(model, t.weight_decay), lr=t.learning_rate, fused=accelerator.device.type == "cuda")
    # A prepared scheduler steps once per process on every optimizer step: count steps that way.
    n = accelerator.num_processes
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(t.warmup_ratio * plan.total_steps) * n, plan.total_steps * n)
    return accelerator.prepare(model, optimizer, scheduler)


# --- the end: results, the run folder, and the processes let go

def train_results(run: Run) -> dict[str, Any]:
    """metrics.json's train section."""
    state, (trainable, parameters) = run.state, run.parameters
    train_time = state.train_time - state.eval_time
    return {
        "loss": state.loss_total / max(state.loss_total_count, 1),
        "runtime_s": train_time,
        "samples_per_second": state.samples / train_time if train_time > 0 else 0.0,
        "steps": state.step,
        "epochs": round(state.step / run.plan.steps_per_epoch, 4),
        "samples": state.samples,
        "eval_runtime_s": state.eval_time,
        "trainable_parameters": trainable,
        "parameters": parameters,
        **({"stopped_early": state.stopped_early} if run.config.train.early_stopping_patience else {}),
        **run.loss.recorded,  # e.g. the class weights the loss used
    }


def save(run: Run, results: dict[str, Any], command: str) -> None:
    """Write the run folder (model, processor, metrics, card); then its checkpoints are spent."""
    accelerator, out = run.accelerator, run.out

    split = "test" if "test" in run.eval_dls else "validation"
    errors = run.errors.get(split)  # None: listing them failed (warned)

    def write() -> None:
        artifacts.save_run(out, accelerator.unwrap_model(run.model), run.processor, run.config, results, command, run.task.pipeline_tag(run.config),
                           errors)

    try:
        writes.together(accelerator, write if accelerator.is_main_process else None)  # a failure stops every process
    except writes.WriteFailed as err:
        again = checkpoints.resume_hint(out) or "run again"
        raise FtkitError(f"{out}: cannot write the finished run ({err.cause}); free space or fix permissions, then {again}", exit_code=1) from None
    if accelerator.is_main_process:  # only once the result is safe: a failed or interrupted save can --resume
        checkpoints.remove(out)
    if errors is not None:
        run.reporter.note(f"{artifacts.ERRORS}: {len(errors)} wrong (or worst-scored) row(s) of the {split} split, worst first")
    accelerator.wait_for_everyone()


def close(run: Run) -> None:
    """Let the processes go, in this order."""
    # end_training destroys the process group. The DDP wrapper's reducer holds it too: drop the
    # wrapper first (the Run holds its only references), or the reducer tears gloo down later,
    # at return, where it hung now and then waiting for a process that had already exited.
    run.model = run.forward = None
    run.accelerator.free_memory()
    run.accelerator.end_training()


def _say(reporter: Reporter, notes: Iterable[str]) -> None:
    for note in notes:
        reporter.note(note)


def check_trackers(trackers: list[str]) -> None:
    """Refuse a tracker whose package is missing before any work, naming the install."""
    from accelerate.utils import is_mlflow_available, is_tensorboard_available, is_wandb_available

    found = {"tensorboard": is_tensorboard_available, "wandb": is_wandb_available, "mlflow": is_mlflow_available}
    for name in trackers:
        if not found[name]():
            raise FtkitError(f"--report-to {name}: the {name} package is not installed; pip install {name} (or drop --report-to {name})")


def tracker_config(config: RunConfig) -> dict[str, Any]:
    """The run config as flat scalars: what trackers accept as hyper-parameters."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flatten(config.to_dict()).items()}


def compiled(model: Any, mode: str) -> Any:
    """`model` under torch.compile (sharing its weights), or itself for mode 'no'."""
    if mode == "no":
        return model
    import torch

    # dynamic=None: the first shape compiles static, a second one recompiles once with symbolic
    # lengths; CUDA graphs (reduce-overhead) are then recorded per padded length, without compiling.
    return torch.compile(model, mode=mode)


def run_evaluation(model: Any, dataloader: Any, accelerator: Any, task: Any, prepared: Any, split: str, reporter: Reporter | None = None,
                   label: str | None = None, errors: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Metrics over every example exactly once: gather_for_metrics drops the padded duplicates.
    label: what the progress bar calls the pass (default: the split; `evaluate` names its file).
    errors: given, errors[split] is set to the family's wrong rows, worst first (left unset if that fails).
    The loaders keep each split's order and the gathered batches come back in it, on every process.

    Per-token outputs differ in length across processes and batches: pad them (-100, which
    every family reads as 'ignore') before gathering and before concatenating.
    """
    import torch

    was_training = model.training
    model.eval()
    chunks: dict[str, list] = {}
    with torch.inference_mode(), (reporter or Reporter(quiet=True)).track(label or split, len(dataloader), "batches") as progress:
        for batch in dataloader:
            outputs = task.eval_outputs(model, batch)
            outputs = {k: accelerator.pad_across_processes(v, dim=1, pad_index=-100) if v.ndim > 1 else v for k, v in outputs.items()}
            for key, value in accelerator.gather_for_metrics(outputs).items():
                chunks.setdefault(key, []).append(value.cpu())
            progress.advance()  # per batch: generation (seq2seq) is the slow part and is inside
    model.train(was_training)
    gathered = {k: _concat(v) for k, v in chunks.items()}
    result = task.compute_metrics(gathered, prepared, split)
    if errors is not None:
        _wrong_rows(errors, task, gathered, prepared, split)
    return result


def _wrong_rows(errors: dict[str, list[dict[str, Any]]], task: Any, gathered: dict[str, Any], prepared: Any, split: str) -> None:
    """errors[split] = the family's wrong rows. A failure there warns and costs the rows, never the
    run's results (as a plotting failure costs the plots)."""
    import sys

    try:
        errors[split] = task.errors(gathered, prepared, split)
    except Exception as err:  # a bug in showing the errors: the trained model and its metrics still count
        print(f"warning: the {split} split's wrong rows not listed ({type(err).__name__}: {err})", file=sys.stderr)


def _concat(tensors: list[Any]) -> Any:
    """Concatenate batches along dim 0, padding dim 1 with -100 to the widest."""
    import torch
    import torch.nn.functional as F

    if tensors[0].ndim < 2:
        return torch.cat(tensors)
    width = max(t.shape[1] for t in tensors)
    return torch.cat([F.pad(t, [0, 0] * (t.ndim - 2) + [0, width - t.shape[1]], value=-100) for t in tensors])


def _param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """Decay weights, not biases and norms (the BERT recipe, and what Trainer does)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() or name.endswith(".bias") else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _limit(splits: dict[str, Any], config: RunConfig, reporter: Reporter) -> dict[str, Any]:
    """Apply data.max_train_samples / max_eval_samples (the first N rows, after carving) for quick
    runs, and say so: metrics of 50 rows must not pass for the split's."""
    d = config.data
    out = {}
    for name, split in splits.items():
        cap = d.max_train_samples if name == "train" else d.max_eval_samples
        out[name] = split.select(list(range(min(cap, len(split)))), split.source) if cap else split
        if cap and cap < len(split):
            flag = "--max-train-samples" if name == "train" else "--max-eval-samples"
            reporter.note(f"{name}: the first {cap:,} of {len(split):,} rows ({flag})")
    return out

