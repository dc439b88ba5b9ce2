"""Security defaults: no code from model repos, no pickle weights, safe YAML, no leaked token,
`recipes copy` writes only where asked, and every torch.load is weights_only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAKE_TOKEN = "hf_FAKEsecretTOKEN1234567890abcdef"


def data_args(files) -> list:
    return ["--train", files["train"], "--validation", files["validation"], "--test", files["test"]]


def one_line(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def pickle_model(tiny_models, tmp_path_factory) -> Path:
    """The tiny BERT saved the old way: pytorch_model.bin (pickle) and no safetensors."""
    import torch
    from safetensors.torch import load_file

    folder = tmp_path_factory.mktemp("pickle") / "bert-bin"
    shutil.copytree(tiny_models["bert"], folder)
    # transformers 5 saves only safetensors: write the pickle file as older tools did
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    assert (folder / "pytorch_model.bin").is_file() and not list(folder.glob("*.safetensors"))
    return folder


def test_pickle_weights_refused_unless_allowed(pickle_model, sentiment_files, cli, tmp_path):
    line = one_line(*cli("finetune", "sentiment", "--model", pickle_model, *data_args(sentiment_files), "-o", tmp_path / "a")[::2])
    assert str(pickle_model) in line and "pickle" in line and "--allow-pickle" in line
    assert not (tmp_path / "a" / "model").exists()

    code, _, err = cli("finetune", "sentiment", "--model", pickle_model, *data_args(sentiment_files), "-o", tmp_path / "b", "--max-steps", "2", "--allow-pickle", "--quiet")
    assert code == 0, err
    assert (tmp_path / "b" / "model" / "model.safetensors").is_file()  # what ftkit writes is safetensors

    # predict on a fine-tuned model folder holding pickle weights only: refused the same way
    import torch
    from safetensors.torch import load_file

    classifier = tmp_path / "classifier-bin"
    shutil.copytree(tmp_path / "b" / "model", classifier)
    torch.save(load_file(str(classifier / "model.safetensors")), classifier / "pytorch_model.bin")
    (classifier / "model.safetensors").unlink()
    (tmp_path / "in.txt").write_text("a fine film\n")
    line = one_line(*cli("predict", classifier, tmp_path / "in.txt")[::2])
    assert "pickle" in line and str(classifier) in line
    code, out, err = cli("predict", classifier, tmp_path / "in.txt", "--allow-pickle")
    assert code == 0 and json.loads(out)["label"] in ("positive", "negative"), err


def test_remote_code_never_runs_by_default(tiny_models, sentiment_files, cli, tmp_path):
    """A model folder whose config asks for repository code: refused, and the code never ran."""
    folder = tmp_path / "custom"
    shutil.copytree(tiny_models["bert"], folder)
    marker = tmp_path / "code-ran"
    (folder / "configuration_evil.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "from transformers import BertConfig\nclass EvilConfig(BertConfig):\n    model_type = 'evil'\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="evil", auto_map={"AutoConfig": "configuration_evil.EvilConfig"})
    (folder / "config.json").write_text(json.dumps(config))

    line = one_line(*cli("finetune", "sentiment", "--model", folder, *data_args(sentiment_files), "-o", tmp_path / "o")[::2])
    assert "--trust-remote-code" in line and str(folder) in line
    assert not marker.exists()


def test_trust_remote_code_warns(tiny_models, sentiment_files, cli, tmp_path):
    code, _, err = cli("finetune", "sentiment", "--model", tiny_models["bert"], *data_args(sentiment_files), "-o", tmp_path / "o", "--max-steps", "1", "--trust-remote-code", "--quiet")
    assert code == 0, err
    assert "warning: --trust-remote-code" in err


def test_no_token_in_outputs_or_errors(tiny_models, sentiment_files, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", FAKE_TOKEN)
    out = tmp_path / "run"
    code, stdout, err = cli("finetune", "sentiment", "--model", tiny_models["bert"], *data_args(sentiment_files), "-o", out, "--max-steps", "2")
    assert code == 0, err
    texts = [stdout, err] + [p.read_bytes().decode("utf-8", "replace") for p in out.rglob("*") if p.is_file()]
    assert len(texts) > 6  # model files, card, config.yaml, metrics.json, log.jsonl were all read
    assert not [t for t in texts if FAKE_TOKEN in t]
    # error paths too: an unreachable Hub model and an unreachable dataset
    for args in (["--model", "no-such-org/private-model", *data_args(sentiment_files)], ["--model", tiny_models["bert"], "--dataset", "no-such-org/private-data"]):
        code, stdout, err = cli("finetune", "sentiment", *args, "-o", tmp_path / "e")
        assert code != 0 and FAKE_TOKEN not in err + stdout


def test_yaml_is_loaded_safely(cli, tmp_path):
    marker = tmp_path / "yaml-ran"
    recipe = tmp_path / "evil.yaml"
    recipe.write_text(f"name: evil\ntask: sequence-classification\nmodel: !!python/object/apply:os.system ['touch {marker}']\n")
    line = one_line(*cli("finetune", recipe, "--train", tmp_path / "x.jsonl")[::2])
    assert str(recipe) in line
    assert not marker.exists()


def test_recipes_copy_writes_only_where_asked(cli, tmp_path):
    outside = tmp_path / "outside.yaml"
    outside.write_text("keep me")
    link = tmp_path / "dest" / "link.yaml"
    link.parent.mkdir()
    link.symlink_to(outside)
    line = one_line(*cli("recipes", "copy", "sentiment", link, "--force")[::2])
    assert "symbolic link" in line
    assert outside.read_text() == "keep me"
    line = one_line(*cli("recipes", "copy", "../../sentiment", tmp_path / "dest")[::2])
    assert "unknown recipe" in line
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == ["link.yaml"]


def test_every_torch_load_is_weights_only(tiny_models, sentiment_files, cli, tmp_path, monkeypatch):
    """Resuming reads the optimizer, scheduler and RNG states back: never with weights_only=False."""
    import torch

    from ftkit import checkpoints

    out = tmp_path / "run"
    args = ["finetune", "sentiment", "--model", tiny_models["bert"], *data_args(sentiment_files), "-o", out, "--max-steps", "6", "--set", "train.checkpoint_every=3", "--quiet"]
    with monkeypatch.context() as m:
        m.setattr(checkpoints, "remove", lambda out: None)  # keep the checkpoints of this finished run
        assert cli(*args)[0] == 0
    shutil.rmtree(out / "model")  # make it look interrupted
    (out / "metrics.json").unlink()
    calls = []
    real_load = torch.load

    def spy(*a, **k):
        calls.append(k.get("weights_only"))
        return real_load(*a, **k)

    monkeypatch.setattr(torch, "load", spy)
    code, _, err = cli(*args, "--resume")
    assert code == 0, err
    assert calls and all(c is True for c in calls), calls
