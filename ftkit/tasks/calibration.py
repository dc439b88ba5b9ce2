"""Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", 2017) for the
single-label classification families (text and images): their `finalize` under --calibrate.

One temperature T > 0 is fitted on the validation logits of the best model, minimising the
negative log-likelihood of softmax(logits / T). It is folded into the head (the layer whose
output is the logits has its weight and bias divided by T), so the saved model, predict,
evaluate and transformers' pipeline() all give the calibrated scores with no extra code, and
the predicted labels cannot change (dividing by T > 0 keeps the order). T is recorded in the
model's config (`calibration_temperature`) for the card and for people.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ftkit import metrics
from ftkit.errors import FtkitError
from ftkit.tasks.common import linear_layers
from ftkit.tasks.family import Prepared

# A validation split the model separates perfectly pulls T towards 0 (ever sharper scores): the
# search stops at 20x sharper (or flatter), where the scores are 0 or 1 anyway.
BOUNDS = (0.05, 20.0)
CONFIG_KEY = "calibration_temperature"  # in the model's config.json


def folded(prepared: Prepared) -> float | None:
    """The T that `calibrate` folded into the head of this run's model (None: not calibrated):
    the test metrics then also score the uncalibrated probabilities, softmax(logits * T)."""
    return prepared.temperature


def calibrate(model: Any, prepared: Prepared, collate: Callable[[list[dict]], dict], batch_size: int) -> dict[str, Any]:
    """Fit T on the validation split, fold it into `model`'s head, and return what metrics.json's
    train section records. Every process runs the whole split (same weights, same batches: the
    same T); process 0's T is then sent to the others, so their heads agree to the bit."""
    import torch

    features = prepared.features["validation"]
    was_training = model.training
    model.eval()
    try:
        head, logits, labels = validation_logits(model, features, collate, batch_size)
    finally:
        model.train(was_training)
    t = _agreed(fit_temperature(logits, labels))
    with torch.no_grad():
        head.weight.div_(t)
        if head.bias is not None:  # GPT-2's score layer has none: logits = W x, so W / T is enough
            head.bias.div_(t)
    model.config.calibration_temperature = t
    # Prepared.extra holds the family's inputs (errors()): T rides beside it, for compute_metrics
    prepared.temperature = t
    before, after = _scores(logits, labels, 1.0), _scores(logits, labels, t)
    return {"calibration": {"temperature": t, "validation_ece_before": before[0], "validation_ece_after": after[0],
                            "validation_nll_before": before[1], "validation_nll_after": after[1], "validation_samples": len(labels)}}


def forget(model: Any) -> None:
    """An uncalibrated run: drop a temperature inherited from a calibrated checkpoint it started
    from (its head is new; the config would claim a calibration it never had)."""
    if getattr(model.config, CONFIG_KEY, None) is not None:
        setattr(model.config, CONFIG_KEY, None)


def validation_logits(model: Any, features: Any, collate: Callable[[list[dict]], dict], batch_size: int) -> tuple[Any, Any, Any]:
    """(the head's last layer, float logits, gold ids) of every validation example, on the CPU."""
    import torch
    from torch.utils.data import DataLoader

    device = next(model.parameters()).device
    head, chunks, labels = None, [], []
    with torch.inference_mode():
        for batch in DataLoader(features, batch_size=batch_size, collate_fn=collate):
            labels.append(batch.pop("labels"))
            batch = {k: v.to(device) for k, v in batch.items()}
            if head is None:  # the first batch tells which layer outputs the logits
                head, logits = logits_layer(model, batch)
            else:
                logits = model(**batch).logits
            chunks.append(logits.float().cpu())
    return head, torch.cat(chunks), torch.cat(labels)


def logits_layer(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """(the nn.Linear whose output is the model's logits, the logits): found by watching the
    candidates (every Linear with one output per class) on a batch, not by a name, which differs
    by architecture (classifier, score, classifier.out_proj...). None fits, e.g. a LoRA adapter
    on the head itself (its output is the Linear's plus the adapter's): refused."""
    seen: dict[str, Any] = {}
    candidates = linear_layers(model, model.config.num_labels)
    hooks = [module.register_forward_hook(lambda _m, _i, out, name=name: seen.__setitem__(name, out)) for name, module in candidates]
    try:
        logits = model(**batch).logits
    finally:
        for hook in hooks:
            hook.remove()
    found = [module for name, module in candidates if name in seen and seen[name].numel() == logits.numel()
             and bool((seen[name].reshape(logits.shape).float() == logits.float()).all())]
    if len(found) != 1:
        raise FtkitError(f"--calibrate: cannot fold a temperature into this model's head ({len(found)} layers output its logits); "
                         "train without --calibrate")
    return found[0], logits


def fit_temperature(logits: Any, labels: Any) -> float:
    """The T in BOUNDS minimising the NLL of softmax(logits / T): a bounded Brent search over
    log T (the NLL is convex in 1/T, so it has one minimum there). Deterministic: the same logits
    give the same T on every process. Never worse than T = 1 on the data it is fitted to."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        return _scores(logits, labels, math.exp(log_t), ece=False)[1]

    found = minimize_scalar(nll, bounds=(math.log(BOUNDS[0]), math.log(BOUNDS[1])), method="bounded", options={"xatol": 1e-5})
    return math.exp(found.x) if nll(found.x) <= nll(0.0) else 1.0


def _scores(logits: Any, labels: Any, t: float, ece: bool = True) -> tuple[float | None, float]:
    """(ECE, NLL) of softmax(logits / t), in float64."""
    import torch.nn.functional as F

    scaled = logits.double() / t
    nll = float(F.cross_entropy(scaled, labels))
    return (metrics.calibration(scaled.softmax(-1).numpy(), labels.tolist())["ece"] if ece else None), nll


def _agreed(t: float) -> float:
    """Process 0's T on every process (one process: `t`)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    box = [t]
    dist.broadcast_object_list(box, src=0)
    return float(box[0])
