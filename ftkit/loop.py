"""The training loop of a run: epochs of optimizer steps with logging, validation, best-model
tracking, checkpoints and a clean stop on SIGINT/SIGTERM.

`ftkit.train` builds a `Run` (setup), drives it (`train`, `finish`, `test`) and saves what it
returns. Everything a checkpoint must hold lives in `Run.state` (a `checkpoints.TrainState`):
a resumed run continues from it exactly. Nothing here knows which task family it trains.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from ftkit import artifacts, checkpoints, divergence, metrics
from ftkit.checkpoints import Plan, StopRequest, TrainState
from ftkit.config import RunConfig
from ftkit.errors import FtkitError
from ftkit.progress import Reporter
from ftkit.tasks.family import Family, Loss, Prepared

# Told (epoch, primary metric value) after each validation while training goes on; a text back
# stops the run there, as early stopping does, and says why. `ftkit sweep` sets it around a
# trial to prune it (a context variable: train.finetune builds the Run, the sweep only calls it).
ON_VALIDATE: ContextVar[Callable[[float, float | None], str | None] | None] = ContextVar("ON_VALIDATE", default=None)


@dataclass(eq=False, repr=False)  # no repr: it would print the model
class Run:
    """One run's objects (what setup built) and how far it has got (`state`)."""

    config: RunConfig
    out: Path
    reporter: Reporter
    accelerator: Any
    task: Family  # the family module
    processor: Any  # the tokenizer (or processor) saved with the model
    prepared: Prepared
    model: Any  # prepared by accelerate (DDP-wrapped under several processes)
    forward: Any  # the model for the training step: itself, or compiled
    optimizer: Any
    scheduler: Any
    loss: Loss
    train_dl: Any
    eval_dls: dict[str, Any]  # "validation" and "test" (if the run has one)
    shuffle: Any  # the generator that orders the training batches: reseeded each epoch
    plan: Plan
    precision: str
    parameters: tuple[int, int]  # (trainable, all)
    evaluator: Callable[..., dict[str, Any]]  # ftkit.train.run_evaluation
    state: TrainState = field(default_factory=TrainState)
    best_state: dict | None = None  # the best weights so far, on the CPU
    errors: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # split -> the final model's wrong rows (errors.jsonl)
    on_validate: Callable[[float, float | None], str | None] | None = field(default_factory=ON_VALIDATE.get)

    def __post_init__(self) -> None:
        t = self.config.train
        self.log = artifacts.JsonlLog(self.out / "log.jsonl", enabled=self.accelerator.is_main_process)
        # The first non-finite loss, kept on the device: read where the loop waits for it anyway.
        advice = divergence.divergence_advice(t.learning_rate, self.precision, t.max_grad_norm)
        self.watch = divergence.LossWatch(self.accelerator.device, advice)
        self.graphs = t.compile == "reduce-overhead" and self.accelerator.device.type == "cuda"
        self.every = t.checkpoint_interval()
        self.saved_step: int | None = None  # the step of the latest checkpoint written or resumed from
        self.loss_sum: Any = None  # losses since the last logging step, on the device (see train)
        self.segment_start = self.window_start = time.perf_counter()
        self.window_samples = 0  # samples since the last logging step: the speed shown

    # --- start

    def resume(self, path: Path) -> None:
        """Continue from checkpoint `path`: weights, optimizer, scheduler, RNG states and `state`."""
        self.state, self.best_state = checkpoints.restore(self.accelerator, self.model, self.scheduler, path, self.plan)  # checked, not trusted
        if self.accelerator.is_main_process:
            checkpoints.trim_log(self.log.path, self.state)
        self.saved_step = self.state.step
        self.reporter.note(f"resuming from {path} (step {self.state.step} of {self.plan.total_steps})")

    def start(self) -> None:
        """Say what the run does, on the progress line's title, and where it starts."""
        t, n, plan = self.config.train, self.accelerator.num_processes, self.plan
        # batch_size is per process and forward pass: what one optimizer step sees is their product
        effective = t.batch_size * n * t.gradient_accumulation_steps
        per_step = f"batch {effective} = {t.batch_size} x {n} processes x {t.gradient_accumulation_steps} accumulation" if effective != t.batch_size else f"batch {t.batch_size}"
        # --max-steps may stop inside an epoch: say how much of one, not the epochs the loop enters
        length = f"{plan.epochs} epoch(s), {plan.total_steps} steps" if plan.total_steps == plan.epochs * plan.steps_per_epoch else \
            f"{plan.total_steps / plan.steps_per_epoch:.3g} epochs, {plan.total_steps} steps ({plan.steps_per_epoch} per epoch)"
        self.reporter.start(plan.total_steps, f"{self.config.name}: {len(self.prepared.features['train'])} examples, {length}, "
                            f"{per_step}, {'fp32' if self.precision == 'no' else self.precision} on {self.accelerator.device.type}")
        self.reporter.update(self.state.step)

    # --- train

    def train(self, command: str) -> None:
        """Epochs of optimizer steps until the last one (or early stopping), validating and
        saving checkpoints on the way. SIGINT/SIGTERM stop after the current step, with a
        checkpoint to resume from (exit 130; `command` is how the message says to resume)."""
        import torch

        self.loss_sum = torch.tensor(self.state.loss_sum, device=self.accelerator.device)
        self.window_start, self.window_samples = time.perf_counter(), 0
        self.model.train()
        self.segment_start = time.perf_counter()
        with StopRequest() as stop:
            for epoch in range(self.state.epoch, self.plan.epochs):
                self.train_epoch(epoch, stop, command)
                if self.done():
                    break
                if not self.config.train.eval_steps:  # once an epoch
                    self.validate_now()
                    if self.state.stopped_early:
                        break
                self.between_epochs(epoch, stop, command)
            self.watch.check(self.accelerator, self.plan.total_steps)  # the steps since the last check: before the final evaluation

    def train_epoch(self, epoch: int, stop: StopRequest, command: str) -> None:
        """One pass over the training batches (the rest of one when resuming mid-epoch)."""
        t, state = self.config.train, self.state
        self.shuffle.manual_seed(t.seed + epoch)  # each epoch's order depends on nothing before it: resumable
        # Features that draw per-epoch randomness of their own (image crops) are told the epoch, not
        # left to count it: accelerate's set_epoch counts a loader's passes, and a resumed run's loaders start at 0.
        if hasattr(self.prepared.features["train"], "start_epoch"):
            self.prepared.features["train"].start_epoch(epoch)
        skip = state.batches if epoch == state.epoch else 0
        loader = self.accelerator.skip_first_batches(self.train_dl, skip) if skip else self.train_dl
        state.epoch, state.batches = epoch, skip
        for batch in loader:
            self.learn(batch)
            if not self.accelerator.sync_gradients:
                continue  # inside an accumulation window: no optimizer step yet
            state.step += 1
            self.report(state.step)
            if t.eval_steps and state.step % t.eval_steps == 0:
                self.validate_now()
            if self.done():
                return
            if isinstance(self.every, int) and state.step % self.every == 0:
                self.checkpoint()
            if _stop_requested(stop, self.accelerator):
                raise self.interrupted(stop, command)

    def learn(self, batch: dict[str, Any]) -> None:
        """One forward and backward pass; the optimizer steps when the accumulation window closes."""
        import torch

        t, accelerator, state = self.config.train, self.accelerator, self.state
        with accelerator.accumulate(self.model):
            if self.graphs:  # a new step: CUDA graph outputs of the last one may be overwritten
                torch.compiler.cudagraph_mark_step_begin()
            loss = self.loss.compute(self.forward, batch)
            accelerator.backward(loss)
            if accelerator.sync_gradients and t.max_grad_norm > 0:
                accelerator.clip_grad_norm_(self.model.parameters(), t.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.loss_sum += loss.detach()
        self.watch.record(loss, state.step + 1)
        state.loss_count += 1
        state.batches += 1
        samples = self.task.batch_size(batch) * accelerator.num_processes
        state.samples += samples
        self.window_samples += samples

    def done(self) -> bool:
        return self.state.step >= self.plan.total_steps or self.state.stopped_early

    def between_epochs(self, epoch: int, stop: StopRequest, command: str) -> None:
        """After epoch `epoch`: the checkpoint of checkpoint_every=epoch, or a requested stop;
        either resumes at the next epoch's first batch."""
        if self.every == "epoch" and epoch + 1 < self.plan.epochs:
            self.state.epoch, self.state.batches = epoch + 1, 0
            self.checkpoint()
        if _stop_requested(stop, self.accelerator):
            self.state.epoch, self.state.batches = epoch + 1, 0
            raise self.interrupted(stop, command)

    # --- logging

    def report(self, step: int) -> None:
        """The progress line after an optimizer step; at logging steps, the log record too."""
        if step % self.config.train.logging_steps == 0 or step == self.plan.total_steps:
            self.log_train(step)
        elif self.reporter.wants_loss:  # `loss -` until the first logging step is a minute on CPU
            # The running mean at once. .item() waits for the device: only until the first
            # logging step, and on the main process alone (its own share: no collective).
            self.reporter.update(step, loss=self.loss_sum.item() / self.state.loss_count, lr=self.scheduler.get_last_lr()[0],
                                 speed=self.speed(), preview=True)
        else:
            self.reporter.update(step)

    def log_train(self, step: int) -> None:
        """A logging step: the mean loss since the last one (every process's) to the log, the
        trackers and the progress line."""
        state = self.state
        # .item() waits for the device: only at logging steps, never every step.
        self.watch.check(self.accelerator, self.plan.total_steps)
        mean_loss = self.accelerator.reduce(self.loss_sum, reduction="mean").item() / state.loss_count
        state.loss_total += mean_loss * state.loss_count
        state.loss_total_count += state.loss_count
        speed, lr = self.speed(), self.scheduler.get_last_lr()[0]
        epoch = round(step / self.plan.steps_per_epoch, 4)
        self.log.write({"type": "train", "step": step, "epoch": epoch, "loss": mean_loss, "learning_rate": lr, "samples_per_second": speed})
        self.accelerator.log({"train/loss": mean_loss, "train/learning_rate": lr, "train/samples_per_second": speed}, step=step)
        self.reporter.update(step, loss=mean_loss, lr=lr, speed=speed)
        self.loss_sum.zero_()
        state.loss_count, self.window_samples, self.window_start = 0, 0, time.perf_counter()

    def speed(self) -> float:
        """Training samples per second since the last logging step (or evaluation)."""
        elapsed = time.perf_counter() - self.window_start
        return self.window_samples / elapsed if elapsed > 0 else 0.0

    # --- validation

    def evaluate(self, split: str, errors: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
        """A split's metrics; `errors` given: its wrong rows too (errors[split])."""
        return self.evaluator(self.model, self.eval_dls[split], self.accelerator, self.task, self.prepared, split, reporter=self.reporter, errors=errors)

    def validate_now(self) -> None:
        """Validate during training: not past a non-finite loss (diverged weights are no
        candidate for the best), and evaluation time is not training speed."""
        self.watch.check(self.accelerator, self.plan.total_steps)
        self.validate(self.state.step / self.plan.steps_per_epoch)
        self.window_start = time.perf_counter()

    def validate(self, epoch: float) -> None:
        """Score the validation split; keep the weights if they are the best so far; count the
        evaluations without improvement for early stopping."""
        state, primary = self.state, self.config.metrics.primary
        self.watch.check_weights(self.accelerator, self.model, f"at step {state.step}")  # diverged weights are no candidate for the best
        began = time.perf_counter()
        state.last_eval = state.step
        result = self.evaluate("validation")
        state.eval_time += time.perf_counter() - began
        if not math.isfinite(result.get("loss", 0.0)):  # finite weights, yet the outputs overflow: garbage
            self.diverged(result["loss"])
        value = metrics.lookup(result, primary)
        self.log.write({"type": "eval", "split": "validation", "step": state.step, "epoch": round(epoch, 4), **result})
        self.accelerator.log(scalars("validation", result), step=state.step)
        self.reporter.eval_line(state.step, epoch, primary, value, result.get("loss"))
        previous = state.best_value
        if value is not None and metrics.is_better(value, previous, self.config.metrics.greater_is_better):
            state.best_value, state.best_step = value, state.step
            state.best_metrics = {**result, "step": state.step, "epoch": round(epoch, 4)}
            # Keep the best weights on the CPU; they become the saved model at the end.
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.accelerator.get_state_dict(self.model).items()}
        if self.config.train.early_stopping_patience:
            self.count_stale(value, previous)
        if self.on_validate is not None and not self.done() and (why := self.on_validate(epoch, value)):
            state.stopped_early = True  # the end of early stopping: the best weights are saved, the run is complete
            self.reporter.note(f"stopped at step {state.step}: {why}; keeping the best model (step {state.best_step})")

    def count_stale(self, value: float | None, previous: float | None) -> None:
        """Early stopping: stop once `patience` evaluations in a row gained no more than the threshold."""
        t, state, greater = self.config.train, self.state, self.config.metrics.greater_is_better
        gain = None if value is None or previous is None else (value - previous) * (1 if greater else -1)
        improved = value is not None and not math.isnan(value) and (previous is None or gain > t.early_stopping_threshold)
        state.stale_evals = 0 if improved else state.stale_evals + 1
        if state.stale_evals >= t.early_stopping_patience:
            state.stopped_early = True
            self.reporter.note(f"early stopping at step {state.step}: {self.config.metrics.primary} has not improved for "
                               f"{state.stale_evals} evaluation(s); keeping the best model (step {state.best_step})")

    def diverged(self, loss: float) -> NoReturn:
        """A non-finite validation loss: stop, keeping no checkpoint of these weights."""
        step = self.state.step
        if self.accelerator.is_main_process:
            checkpoints.discard(self.out, step)  # an epoch-end checkpoint of these weights came just before
        raise FtkitError(f"training diverged: the validation loss is {loss} at step {step} of {self.plan.total_steps}; "
                         f"stopped there, no model saved (nor any checkpoint from step {step} on). {self.watch.advice}", exit_code=1)

    # --- checkpoints and stopping

    def checkpoint(self) -> Path:
        """Save checkpoints/step-N, to resume from exactly."""
        state, accelerator = self.state, self.accelerator
        self.watch.check(accelerator, self.plan.total_steps)  # never a checkpoint past a non-finite loss,
        self.watch.check_weights(accelerator, self.model, f"at step {state.step}")  # nor of non-finite weights
        state.train_time += time.perf_counter() - self.segment_start  # time spent saving is not training time
        state.loss_sum = accelerator.reduce(self.loss_sum, reduction="mean").item() if accelerator.num_processes > 1 else self.loss_sum.item()
        path = checkpoints.save(accelerator, self.out, state, self.best_state, self.config.train.keep_checkpoints)
        self.saved_step, self.segment_start = state.step, time.perf_counter()
        return path

    def interrupted(self, stop: StopRequest, command: str) -> FtkitError:
        """Exit 130 (as for Ctrl-C) with a checkpoint of this step (unless one was just saved)
        and the way back in."""
        import shlex
        import signal

        path = self.checkpoint() if self.saved_step != self.state.step else checkpoints.latest(self.out)
        name = signal.Signals(stop.signal).name if stop.signal else "a signal"
        return FtkitError(f"stopped by {name} at step {path.name.split('-')[-1] if path else '?'}; checkpoint saved: {path}. "
                          f"Resume with: {command} --resume {shlex.quote(str(self.out))}", exit_code=130)

    # --- the end

    def finish(self) -> None:
        """After the last step: its losses into the run's mean loss, a last validation (the final
        weights are always a candidate for the best), then the best weights back in the model."""
        state = self.state
        if state.loss_count:  # steps since the last logging step (early stopping): part of the mean loss
            state.loss_total += self.accelerator.reduce(self.loss_sum, reduction="mean").item()
            state.loss_total_count += state.loss_count
        if state.last_eval != state.step:
            self.validate(state.step / self.plan.steps_per_epoch)
        state.train_time += time.perf_counter() - self.segment_start
        self.reporter.finish()
        if self.best_state is not None:
            self.accelerator.unwrap_model(self.model).load_state_dict(self.best_state)
        self.watch.check_weights(self.accelerator, self.model, "of the final model")  # garbage is no result

    def test(self) -> dict[str, Any]:
        """The test split's metrics (of the best model), logged as the last record; its wrong rows
        into self.errors, from the same pass."""
        step = self.state.step
        result = self.evaluate("test", self.errors)
        self.log.write({"type": "eval", "split": "test", "step": step, **result})
        self.accelerator.log(scalars("test", result), step=step)
        return result

    def list_errors(self, split: str) -> None:
        """The best model's wrong rows of `split` into self.errors, for a run without a test split: one
        more pass (the validations during training scored other weights, and kept no rows)."""
        self.evaluate(split, self.errors)


def scalars(split: str, result: dict[str, Any]) -> dict[str, float]:
    """Every numeric metric of a split, as 'split/name' (per_class.spam.f1 included)."""
    return {f"{split}/{key}": metrics.lookup(result, key) for key in metrics.available(result) if key not in ("step", "epoch")}


def _stop_requested(stop: StopRequest, accelerator: Any) -> bool:
    """Whether any process got SIGINT/SIGTERM; all processes must agree to stop at the same step."""
    if accelerator.num_processes == 1:
        return stop.signal is not None
    import torch

    flag = torch.tensor(1.0 if stop.signal is not None else 0.0, device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="sum").item() > 0)
