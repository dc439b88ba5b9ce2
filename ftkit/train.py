"""THE training loop: one Accelerate loop for every task family, read top to bottom.

setup (checks, data, tokenizer, model) -> train (with evaluation and best-model tracking)
-> test -> save. The task family module supplies the parts that differ (features, model
class, what to gather, metrics); nothing here knows which family it runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ftkit import artifacts, checkpoints, divergence, lora, metrics, writes
from ftkit.batching import LengthGroupedBatches
from ftkit.config import RunConfig, flatten
from ftkit.data import load_splits
from ftkit.errors import FtkitError
from ftkit.models import check_weights, freeze_unsaved, load_model_config, load_tokenizer, max_positions, model_source, quiet_transformers
from ftkit.progress import Reporter
from ftkit.tasks import get_task


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
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
    from torch.utils.data import DataLoader
    from transformers import get_linear_schedule_with_warmup

    t = config.train
    task = get_task(config.task)
    quiet_transformers()

    # --- setup: every check that can fail runs before the first expensive step
    source = model_source(config.model, task)  # the family says what a missing model's advice is
    check_weights(source)  # refuse pickle-only weights before any data is read
    model_config = load_model_config(config.model)
    task.check_model(model_config, config.model)
    limit = max_positions(model_config)
    if limit and t.max_length > limit:
        raise FtkitError(f"--max-length {t.max_length} is beyond what '{config.model}' can read ({limit} tokens); use <= {limit}")
    splits = load_splits(config.data, task.columns(config), t.seed, task.STRATIFY, task.normalizer(config))
    for split in splits.values():
        for note in split.notes:
            reporter.note(note)
    tokenizer = load_tokenizer(config.model, task.PREFIX_SPACE)
    trackers = t.trackers()

    precision = resolve_precision(t.mixed_precision)
    if torch.cuda.is_available():  # TF32 tensor cores for what runs in fp32 (bf16 autocast covers most)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    accelerator = Accelerator(
        mixed_precision=precision, gradient_accumulation_steps=t.gradient_accumulation_steps,
        dataloader_config=DataLoaderConfiguration(non_blocking=True),  # with pinned memory: async copies
        log_with=trackers or None, project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "tensorboard")),
    )
    reporter.main_process = accelerator.is_main_process
    set_seed(t.seed)
    with accelerator.main_process_first():  # tokenize once; other ranks wait, then reuse
        prepared = task.prepare(_limit(splits, config, reporter), config, tokenizer)
    task.check_metric_keys(config, prepared.names)
    for note in prepared.notes:
        reporter.note(note)
    model = task.load_model(source, prepared, tokenizer, config)
    freeze_unsaved(model)  # else the saved model would differ from the one scored
    if config.lora.enabled:
        model = lora.wrap(model, config)
    # Every input is accepted now (data, tokenizer, weights): only now may the run folder be made,
    # or --overwrite clear the earlier run. --resume keeps its config.yaml: it compared it.
    if accelerator.is_main_process and resume is None:
        if accepted is not None:
            accepted()
        try:
            artifacts.save_config(out / "config.yaml", config)
        except OSError as err:
            raise FtkitError(f"{out}: cannot write config.yaml ({err.strerror or err}); free space or fix permissions, then run again", exit_code=1) from None
    trainable, parameters = lora.parameter_counts(model)
    if config.lora.enabled:
        reporter.note(f"LoRA r={config.lora.r}, alpha={config.lora.alpha}: {trainable:,} of {parameters:,} parameters train ({100 * trainable / parameters:.2f}%)")
    class_weights = dict(zip(prepared.names, task.class_weights(prepared))) if t.class_weights else None  # classification only (check())
    loss_weights = torch.tensor(list(class_weights.values()), dtype=torch.float32, device=accelerator.device) if class_weights else None
    if class_weights:
        reporter.note("class weights (balanced): " + ", ".join(f"{n} {w:.3f}" for n, w in class_weights.items()))

    # Tensor cores want lengths that are multiples of 8 under mixed precision; CUDA graphs want
    # few distinct shapes: lengths padded to multiples of 32 give max_length / 32 of them.
    # pad_to_max_length: inputs are cut at max_length, so a multiple of it is exactly max_length.
    multiple = t.max_length if t.pad_to_max_length else 32 if t.compile == "reduce-overhead" else 8 if precision != "no" else None
    collate = task.collator(tokenizer, multiple)
    shuffle = torch.Generator().manual_seed(t.seed)
    pin = accelerator.device.type == "cuda"  # pinned host memory: copies to the GPU overlap compute
    train_features = prepared.features["train"]
    if t.group_by_length:  # same batch size and count, far less padding
        batches = LengthGroupedBatches([len(ids) for ids in train_features["input_ids"]], t.batch_size, shuffle)
        train_dl = DataLoader(train_features, batch_sampler=batches, collate_fn=collate, generator=shuffle, pin_memory=pin)
    else:
        train_dl = DataLoader(train_features, batch_size=t.batch_size, shuffle=True, collate_fn=collate, generator=shuffle, pin_memory=pin)
    eval_size = t.eval_batch_size or 2 * t.batch_size
    eval_features = {s: prepared.features[s] for s in ("validation", "test") if s in prepared.features}
    if t.eval_max_samples and len(eval_features["validation"]) > t.eval_max_samples:
        # Generation is slow: score the first rows while training; the test split uses every row.
        eval_features["validation"] = eval_features["validation"].select(range(t.eval_max_samples))
        reporter.note(f"validation during training: the first {t.eval_max_samples} rows (train.eval_max_samples)")
    eval_dls = {s: DataLoader(f, batch_size=eval_size, collate_fn=collate, pin_memory=pin) for s, f in eval_features.items()}
    train_dl, *eval_list = accelerator.prepare(train_dl, *eval_dls.values())
    eval_dls = dict(zip(eval_dls, eval_list))

    # Steps are optimizer steps. The prepared loader holds this process's share of batches; the
    # last accumulation window of an epoch steps even when short (accelerate syncs at the end).
    steps_per_epoch = math.ceil(len(train_dl) / t.gradient_accumulation_steps)
    total_steps = t.max_steps or steps_per_epoch * t.epochs
    epochs = math.ceil(total_steps / steps_per_epoch)
    optimizer = torch.optim.AdamW(
        _param_groups(model, t.weight_decay), lr=t.learning_rate, fused=accelerator.device.type == "cuda"
    )
    # A prepared scheduler steps once per process on every optimizer step: count steps that way.
    n = accelerator.num_processes
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(t.warmup_ratio * total_steps) * n, total_steps * n)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    forward = compiled(model, t.compile)  # the training step only: evaluation and generate() stay eager
    graphs = t.compile == "reduce-overhead" and accelerator.device.type == "cuda"
    if trackers:  # only the main process logs; the config is what the run was asked to do
        accelerator.init_trackers(config.name, config=tracker_config(config), init_kwargs={"wandb": {"name": out.name}, "mlflow": {"run_name": out.name}})

    def evaluate(split: str) -> dict[str, Any]:
        return run_evaluation(model, eval_dls[split], accelerator, task, prepared, split, reporter=reporter)

    # --- train (or resume: weights, optimizer, scheduler and RNG states come from the checkpoint)
    log = artifacts.JsonlLog(out / "log.jsonl", enabled=accelerator.is_main_process)
    state: dict[str, Any] = {  # everything a checkpoint must hold besides accelerate's own state
        "step": 0, "epoch": 0, "batches": 0, "last_eval": -1, "best_step": None, "best_value": None, "best_metrics": {},
        "samples": 0, "train_time": 0.0, "eval_time": 0.0, "loss_sum": 0.0, "loss_count": 0, "loss_total": 0.0, "loss_total_count": 0,
        "stale_evals": 0, "stopped_early": False,  # early stopping: evaluations since the metric last improved
    }
    best_state = None
    if resume is not None:
        plan = checkpoints.Plan(total_steps, steps_per_epoch, epochs, len(train_dl), t.gradient_accumulation_steps, n, precision != "fp16")
        saved, best_state = checkpoints.restore(accelerator, model, scheduler, resume, plan)  # checked, not trusted
        state.update(saved)
        if accelerator.is_main_process:
            checkpoints.trim_log(out / "log.jsonl", state)
        reporter.note(f"resuming from {resume} (step {state['step']} of {total_steps})")
    # batch_size is per process and forward pass: what one optimizer step sees is their product
    effective = t.batch_size * n * t.gradient_accumulation_steps
    per_step = f"batch {effective} = {t.batch_size} x {n} processes x {t.gradient_accumulation_steps} accumulation" if effective != t.batch_size else f"batch {t.batch_size}"
    # --max-steps may stop inside an epoch: say how much of one, not the epochs the loop enters
    length = f"{epochs} epoch(s), {total_steps} steps" if total_steps == epochs * steps_per_epoch else \
        f"{total_steps / steps_per_epoch:.3g} epochs, {total_steps} steps ({steps_per_epoch} per epoch)"
    reporter.start(total_steps, f"{config.name}: {len(prepared.features['train'])} examples, {length}, "
                   f"{per_step}, {'fp32' if precision == 'no' else precision} on {accelerator.device.type}")
    reporter.update(state["step"])
    loss_sum = torch.tensor(state["loss_sum"], device=accelerator.device)
    window_start, window_samples = time.perf_counter(), 0
    saved_step = state["step"] if resume is not None else None
    every = t.checkpoint_interval()

    def validate(epoch: float) -> None:
        nonlocal best_state
        watch.check_weights(accelerator, model, f"at step {state['step']}")  # diverged weights are no candidate for the best
        began = time.perf_counter()
        state["last_eval"] = state["step"]
        result = evaluate("validation")
        state["eval_time"] += time.perf_counter() - began
        if not math.isfinite(result.get("loss", 0.0)):  # finite weights, yet the outputs overflow: garbage
            if accelerator.is_main_process:
                checkpoints.discard(out, state["step"])  # an epoch-end checkpoint of these weights came just before
            raise FtkitError(f"training diverged: the validation loss is {result['loss']} at step {state['step']} of {total_steps}; "
                             f"stopped there, no model saved (nor any checkpoint from step {state['step']} on). {watch.advice}", exit_code=1)
        value = metrics.lookup(result, config.metrics.primary)
        log.write({"type": "eval", "split": "validation", "step": state["step"], "epoch": round(epoch, 4), **result})
        accelerator.log(scalars("validation", result), step=state["step"])
        reporter.eval_line(state["step"], epoch, config.metrics.primary, value, result.get("loss"))
        previous = state["best_value"]
        if value is not None and metrics.is_better(value, previous, config.metrics.greater_is_better):
            state.update(best_value=value, best_step=state["step"], best_metrics={**result, "step": state["step"], "epoch": round(epoch, 4)})
            # Keep the best weights on the CPU; they become the saved model at the end.
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in accelerator.get_state_dict(model).items()}
        if t.early_stopping_patience:
            gain = None if value is None or previous is None else (value - previous) * (1 if config.metrics.greater_is_better else -1)
            improved = value is not None and not math.isnan(value) and (previous is None or gain > t.early_stopping_threshold)
            state["stale_evals"] = 0 if improved else state["stale_evals"] + 1
            if state["stale_evals"] >= t.early_stopping_patience:
                state["stopped_early"] = True
                reporter.note(f"early stopping at step {state['step']}: {config.metrics.primary} has not improved for "
                              f"{state['stale_evals']} evaluation(s); keeping the best model (step {state['best_step']})")

    def checkpoint() -> Path:
        nonlocal saved_step, segment_start
        watch.check(accelerator, total_steps)  # never a checkpoint past a non-finite loss,
        watch.check_weights(accelerator, model, f"at step {state['step']}")  # nor of non-finite weights
        state["train_time"] += time.perf_counter() - segment_start  # time spent saving is not training time
        state["loss_sum"] = accelerator.reduce(loss_sum, reduction="mean").item() if accelerator.num_processes > 1 else loss_sum.item()
        path = checkpoints.save(accelerator, out, state, best_state, t.keep_checkpoints)
        saved_step, segment_start = state["step"], time.perf_counter()
        return path

    model.train()
    segment_start = time.perf_counter()
    with checkpoints.StopRequest() as stop:
        # The first non-finite loss, kept on the device: read where the loop waits for it anyway.
        watch = divergence.LossWatch(accelerator.device, divergence.divergence_advice(t.learning_rate, precision, t.max_grad_norm))
        for epoch in range(state["epoch"], epochs):
            shuffle.manual_seed(t.seed + epoch)  # each epoch's order depends on nothing before it: resumable
            skip = state["batches"] if epoch == state["epoch"] else 0
            loader = accelerator.skip_first_batches(train_dl, skip) if skip else train_dl
            state["epoch"], state["batches"] = epoch, skip
            for batch in loader:
                with accelerator.accumulate(model):
                    if graphs:  # a new step: CUDA graph outputs of the last one may be overwritten
                        torch.compiler.cudagraph_mark_step_begin()
                    inputs = {k: v for k, v in batch.items() if k not in task.META_KEYS}
                    if loss_weights is None:
                        loss = forward(**inputs).loss
                    else:  # the model's own loss is unweighted: weigh each class by its rarity
                        labels = inputs.pop("labels")
                        loss = torch.nn.functional.cross_entropy(forward(**inputs).logits.float(), labels, weight=loss_weights)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and t.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                loss_sum += loss.detach()
                watch.record(loss, state["step"] + 1)
                state["loss_count"] += 1
                state["batches"] += 1
                batch_samples = batch["input_ids"].shape[0] * accelerator.num_processes
                state["samples"] += batch_samples
                window_samples += batch_samples
                if not accelerator.sync_gradients:
                    continue
                state["step"] += 1
                step = state["step"]
                if step % t.logging_steps == 0 or step == total_steps:
                    # .item() waits for the device: only at logging steps, never every step.
                    watch.check(accelerator, total_steps)
                    mean_loss = accelerator.reduce(loss_sum, reduction="mean").item() / state["loss_count"]
                    state["loss_total"] += mean_loss * state["loss_count"]
                    state["loss_total_count"] += state["loss_count"]
                    elapsed = time.perf_counter() - window_start
                    speed = window_samples / elapsed if elapsed > 0 else 0.0
                    lr = scheduler.get_last_lr()[0]
                    log.write({"type": "train", "step": step, "epoch": round(step / steps_per_epoch, 4), "loss": mean_loss, "learning_rate": lr, "samples_per_second": speed})
                    accelerator.log({"train/loss": mean_loss, "train/learning_rate": lr, "train/samples_per_second": speed}, step=step)
                    reporter.update(step, loss=mean_loss, lr=lr, speed=speed)
                    loss_sum.zero_()
                    state["loss_count"], window_samples, window_start = 0, 0, time.perf_counter()
                elif reporter.wants_loss:  # `loss -` until the first logging step is a minute on CPU
                    # The running mean at once. .item() waits for the device: only until the first
                    # logging step, and on the main process alone (its own share: no collective).
                    elapsed = time.perf_counter() - window_start
                    reporter.update(step, loss=loss_sum.item() / state["loss_count"], lr=scheduler.get_last_lr()[0],
                                    speed=window_samples / elapsed if elapsed > 0 else 0.0, preview=True)
                else:
                    reporter.update(step)
                if t.eval_steps and step % t.eval_steps == 0:
                    watch.check(accelerator, total_steps)  # diverged weights are no candidate for the best
                    validate(step / steps_per_epoch)
                    window_start = time.perf_counter()  # evaluation time is not training speed
                if step >= total_steps or state["stopped_early"]:
                    break
                if isinstance(every, int) and step % every == 0:
                    checkpoint()
                if _stop_requested(stop, accelerator):
                    raise _interrupted(stop, checkpoint() if saved_step != step else checkpoints.latest(out), command, out)
            if state["step"] >= total_steps or state["stopped_early"]:
                break
            if not t.eval_steps:
                watch.check(accelerator, total_steps)
                validate(state["step"] / steps_per_epoch)
                window_start = time.perf_counter()
                if state["stopped_early"]:
                    break
            if every == "epoch" and epoch + 1 < epochs:
                state["epoch"], state["batches"] = epoch + 1, 0
                checkpoint()
            if _stop_requested(stop, accelerator):
                state["epoch"], state["batches"] = epoch + 1, 0
                raise _interrupted(stop, checkpoint() if saved_step != state["step"] else checkpoints.latest(out), command, out)
        watch.check(accelerator, total_steps)  # the steps since the last check: before the final evaluation
    step = state["step"]
    if state["loss_count"]:  # steps since the last logging step (early stopping): part of the mean loss
        state["loss_total"] += accelerator.reduce(loss_sum, reduction="mean").item()
        state["loss_total_count"] += state["loss_count"]
    if state["last_eval"] != step:  # the final weights are always a candidate for the best model
        validate(step / steps_per_epoch)
    state["train_time"] += time.perf_counter() - segment_start
    train_time = state["train_time"] - state["eval_time"]
    samples, eval_time = state["samples"], state["eval_time"]
    reporter.finish()

    # --- test with the best model, then save
    if best_state is not None:
        accelerator.unwrap_model(model).load_state_dict(best_state)
    watch.check_weights(accelerator, model, "of the final model")  # garbage is no result
    results: dict[str, Any] = {
        "train": {
            "loss": state["loss_total"] / max(state["loss_total_count"], 1),
            "runtime_s": train_time,
            "samples_per_second": samples / train_time if train_time > 0 else 0.0,
            "steps": step,
            "epochs": round(step / steps_per_epoch, 4),
            "samples": samples,
            "eval_runtime_s": eval_time,
            "trainable_parameters": trainable,
            "parameters": parameters,
            **({"stopped_early": state["stopped_early"]} if t.early_stopping_patience else {}),
            **({"class_weights": class_weights} if class_weights else {}),
        },
        "validation": state["best_metrics"],
    }
    if "test" in eval_dls:
        results["test"] = evaluate("test")
        log.write({"type": "eval", "split": "test", "step": step, **results["test"]})
        accelerator.log(scalars("test", results["test"]), step=step)
    accelerator.wait_for_everyone()

    def save() -> None:
        artifacts.save_run(out, accelerator.unwrap_model(model), tokenizer, config, results, command, task.pipeline_tag(config))

    try:
        writes.together(accelerator, save if accelerator.is_main_process else None)  # a failure stops every process
    except writes.WriteFailed as err:
        again = checkpoints.resume_hint(out) or "run again"
        raise FtkitError(f"{out}: cannot write the finished run ({err.cause}); free space or fix permissions, then {again}", exit_code=1) from None
    if accelerator.is_main_process:  # only once the result is safe: a failed or interrupted save can --resume
        checkpoints.remove(out)
    accelerator.wait_for_everyone()
    # end_training destroys the process group. The DDP wrapper's reducer holds it too: drop the
    # wrapper first (the closures read the same cell), or the reducer tears gloo down later, at
    # return, where it hung now and then waiting for a process that had already exited.
    model = forward = None
    accelerator.free_memory()
    accelerator.end_training()
    return results


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


def scalars(split: str, result: dict[str, Any]) -> dict[str, float]:
    """Every numeric metric of a split, as 'split/name' (per_class.spam.f1 included)."""
    return {f"{split}/{key}": metrics.lookup(result, key) for key in metrics.available(result) if key not in ("step", "epoch")}


def compiled(model: Any, mode: str) -> Any:
    """`model` under torch.compile (sharing its weights), or itself for mode 'no'."""
    if mode == "no":
        return model
    import torch

    # dynamic=None: the first shape compiles static, a second one recompiles once with symbolic
    # lengths; CUDA graphs (reduce-overhead) are then recorded per padded length, without compiling.
    return torch.compile(model, mode=mode)


def run_evaluation(model: Any, dataloader: Any, accelerator: Any, task: Any, prepared: Any, split: str, reporter: Reporter | None = None,
                   label: str | None = None) -> dict[str, Any]:
    """Metrics over every example exactly once: gather_for_metrics drops the padded duplicates.
    label: what the progress bar calls the pass (default: the split; `evaluate` names its file).

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
    return task.compute_metrics({k: _concat(v) for k, v in chunks.items()}, prepared, split)


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



def _stop_requested(stop: checkpoints.StopRequest, accelerator: Any) -> bool:
    """Whether any process got SIGINT/SIGTERM; all processes must agree to stop at the same step."""
    if accelerator.num_processes == 1:
        return stop.signal is not None
    import torch

    flag = torch.tensor(1.0 if stop.signal is not None else 0.0, device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum").item() > 0)


def _interrupted(stop: checkpoints.StopRequest, path: Path | None, command: str, out: Path) -> FtkitError:
    """Exit 130 (as for Ctrl-C) with the way back in."""
    import shlex
    import signal

    name = signal.Signals(stop.signal).name if stop.signal else "a signal"
    return FtkitError(f"stopped by {name} at step {path.name.split('-')[-1] if path else '?'}; checkpoint saved: {path}. "
                      f"Resume with: {command} --resume {shlex.quote(str(out))}", exit_code=130)
