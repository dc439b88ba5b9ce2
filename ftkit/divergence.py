"""Divergence: nothing past the first non-finite loss is saved, and a model holding NaN or
infinite weights is never called a result."""

from __future__ import annotations

from typing import Any

from ftkit.errors import FtkitError

class LossWatch:
    """Remembers the first non-finite training loss on the device, so that no step waits for
    the device to check it; `check` reads it where the loop waits anyway (logging steps,
    evaluations, checkpoints, the end)."""

    def __init__(self, device: Any, advice: str) -> None:
        import torch

        self._step = torch.zeros((), dtype=torch.int64, device=device)  # 0: none yet (steps count from 1)
        self._value = torch.zeros((), dtype=torch.float32, device=device)
        self.advice = advice

    def record(self, loss: Any, step: int) -> None:
        """Note `loss` (a forward pass of optimizer step `step`) if it is the first non-finite one."""
        import torch

        loss = loss.detach().float()
        first = (self._step == 0) & ~torch.isfinite(loss)
        self._step = torch.where(first, step, self._step)
        self._value = torch.where(first, loss, self._value)

    def check(self, accelerator: Any, total_steps: int) -> None:
        """Raise FtkitError (exit 1) in every process if any process has seen a non-finite loss."""
        steps = accelerator.gather(self._step.reshape(1)) if accelerator.num_processes > 1 else self._step.reshape(1)
        found = [(s, i) for i, s in enumerate(steps.tolist()) if s > 0]
        if not found:
            return
        step, rank = min(found)
        values = accelerator.gather(self._value.reshape(1)) if accelerator.num_processes > 1 else self._value.reshape(1)
        raise FtkitError(f"training diverged: the loss is {values.tolist()[rank]} at step {step} of {total_steps}; stopped there, "
                         f"no model saved (nor any checkpoint after step {step - 1}). {self.advice}", exit_code=1)


    def check_weights(self, accelerator: Any, model: Any, where: str) -> None:
        """Raise FtkitError (exit 1) when the weights hold NaN or inf: finite losses do not prove
        finite weights (the last update may overflow), and a checkpoint of them is no way back."""
        if bad := nonfinite(accelerator.unwrap_model(model).parameters(), accelerator):
            raise FtkitError(f"training diverged: {bad} weight tensor(s) {where} hold NaN or infinite values; "
                             f"nothing of them is saved. {self.advice}", exit_code=1)


def divergence_advice(learning_rate: float, precision: str, max_grad_norm: float) -> str:
    """What to try against a diverging run, given its settings."""
    tips = [f"a lower --learning-rate (this run: {learning_rate:g})"]
    if precision != "no":
        tips.append("--mixed-precision no" + (" or bf16 instead of fp16" if precision == "fp16" else ""))
    tips.append(f"stronger gradient clipping (--set train.max_grad_norm={max_grad_norm / 2:g}; this run: {max_grad_norm:g})" if max_grad_norm > 0
                else "gradient clipping (--set train.max_grad_norm=1.0)")
    return "Try " + ", ".join(tips[:-1]) + " or " + tips[-1]


def nonfinite(tensors: Any, accelerator: Any = None) -> int:
    """How many of `tensors` hold NaN or inf; with `accelerator`, summed over its processes
    (each checks its own shard of a distributed tensor)."""
    import torch

    flags = [~torch.isfinite(t.to_local() if hasattr(t, "to_local") else t).all() for t in tensors if t.is_floating_point()]
    count = torch.stack(flags).sum() if flags else torch.tensor(0)
    if accelerator is not None and accelerator.num_processes > 1:
        count = accelerator.reduce(count.to(accelerator.device), reduction="sum")
    return int(count.item())
