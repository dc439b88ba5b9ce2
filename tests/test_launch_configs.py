"""The Accelerate configs shipped in recipes/accelerate/ load with Accelerate's own reader and
say how they are used; `train.pad_to_max_length` gives the one static shape XLA wants."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "recipes" / "accelerate").glob("*.yaml"))
EXPECTED = {"single-gpu": "NO", "multi-gpu": "MULTI_GPU", "fsdp": "FSDP", "deepspeed-zero2": "DEEPSPEED", "deepspeed-zero3": "DEEPSPEED", "tpu": "XLA"}


def test_every_engine_has_a_config():
    assert sorted(p.stem for p in CONFIGS) == sorted(EXPECTED)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_and_opens_with_its_command(path):
    config = load_config_from_file(str(path))
    assert str(config.distributed_type).rsplit(".", 1)[-1] == EXPECTED[path.stem]
    first = path.read_text().splitlines()[0]
    assert first.startswith(f"# accelerate launch --config_file recipes/accelerate/{path.name} -m ftkit finetune ")
    if path.stem == "fsdp":
        assert config.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    if path.stem.startswith("deepspeed"):
        assert config.deepspeed_config["zero_stage"] == int(path.stem[-1])


def test_recipes_list_ignores_the_accelerate_folder():
    from ftkit.recipes import all_recipes

    assert {r.name for r in all_recipes()} == {"sentiment", "spam", "ner", "summarization", "translation", "generation", "images", "speech",
                                                 "multilabel", "regression", "mlm", "tweets"}


def test_pad_to_max_length_gives_one_shape(tiny_models, sentiment_files, cli, tmp_path, monkeypatch):
    import transformers

    shapes = set()
    forward = transformers.BertForSequenceClassification.forward

    def spy(self, input_ids=None, **kwargs):
        shapes.add(tuple(input_ids.shape[1:]))
        return forward(self, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(transformers.BertForSequenceClassification, "forward", spy)
    code, _, err = cli("finetune", "sentiment", "--model", tiny_models["bert"], "--train", sentiment_files["train"], "--max-steps", "3",
                       "--max-length", "40", "-o", tmp_path / "o", "--quiet", "--set", "train.pad_to_max_length=true")
    assert code == 0, err
    assert shapes == {(40,)}  # training and evaluation batches: all padded to max_length
