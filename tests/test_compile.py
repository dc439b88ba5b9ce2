"""`train.compile`: the training step runs under torch.compile; evaluation, saving and the
saved weights are the plain model's. Dynamo traces the real model here; the aot_eager backend
stands in for inductor, whose C++ compile takes minutes on a small CPU."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_training_step(mode, tiny_models, sentiment_files, cli, tmp_path, monkeypatch):
    calls = []
    real_compile = torch.compile

    def compile_spy(model, **kwargs):
        calls.append(kwargs)
        return real_compile(model, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", compile_spy)
    torch._dynamo.reset()
    out = tmp_path / "run"
    code, _, err = cli(
        "finetune", "sentiment", "--model", tiny_models["bert"], "--train", sentiment_files["train"],
        "--validation", sentiment_files["validation"], "--test", sentiment_files["test"], "--epochs", "4",
        "--batch-size", "16", "--learning-rate", "3e-3", "-o", out, "--quiet", "--set", f"train.compile={mode}",
    )
    assert code == 0, err
    assert calls == [{"mode": mode}]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.8  # it trained through the compiled step
    weights = load_file(str(out / "model" / "model.safetensors"))
    assert not [k for k in weights if "_orig_mod" in k]  # the plain model was saved
    assert json.loads((out / "log.jsonl").read_text().splitlines()[0])["type"] == "train"


def test_compile_flag_is_checked(cli, tiny_models, sentiment_files, tmp_path):
    code, _, err = cli("finetune", "sentiment", "--model", tiny_models["bert"], "--train", sentiment_files["train"], "-o", tmp_path / "o", "--compile", "reduce_overhead")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "'train.compile' must be one of no, default, reduce-overhead, max-autotune" in err and "Did you mean 'reduce-overhead'" in err
