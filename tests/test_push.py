"""`ftkit push RUN REPO_ID` (issue 18): what goes to the Hub and what never does, one-line
failures (offline, logged out, bad repo id, no adapter), a token never printed, and card
metadata the Hub accepts for every family. No network: HfApi is replaced by a recorder."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests.conftest import finish_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOKEN = "hf_FakeTokenForTests0123456789abcdef"  # never to be printed
REPO = "someone/sentiment-tiny"


@pytest.fixture(scope="module")
def run(tiny_models, sentiment_files, tmp_path_factory) -> Path:
    """A finished 2-step run, plus what must never go: a checkpoint, a user's own files, a
    hidden file and a link in model/."""
    out = finish_run(tmp_path_factory.mktemp("push") / "run", tiny_models["bert"], sentiment_files["train"], 2)
    (out / "checkpoints" / "step-1").mkdir(parents=True)
    (out / "checkpoints" / "step-1" / "optimizer.pt").write_bytes(b"x")
    (out / "notes.txt").write_text("my own notes", encoding="utf-8")
    (out / ".env").write_text(f"HF_TOKEN={TOKEN}\n", encoding="utf-8")
    (out / "model" / ".DS_Store").write_bytes(b"x")
    (out / "model" / "elsewhere.txt").symlink_to(out / "notes.txt")
    return out


@pytest.fixture(scope="module")
def lora_run(run, tmp_path_factory) -> Path:
    """The layout of a LoRA run saved without --merge: adapter/ (with its card and plots), no model/."""
    out = tmp_path_factory.mktemp("push-lora") / "run"
    shutil.copytree(run, out, symlinks=True)
    (out / "model" / "elsewhere.txt").unlink()
    (out / "model").rename(out / "adapter")
    (out / "adapter" / "config.json").rename(out / "adapter" / "model_config.json")
    (out / "adapter" / "adapter_config.json").write_text('{"peft_type": "LORA", "base_model_name_or_path": "/home/me/bert"}', encoding="utf-8")
    return out


class Recorder:
    """HfApi as push uses it: records each call instead of reaching the Hub."""

    calls: list[tuple] = []
    fail: Exception | None = None

    def __init__(self, token: str | None = None) -> None:
        Recorder.calls.append(("HfApi", token))

    def create_repo(self, repo_id: str, **kwargs) -> str:
        if Recorder.fail is not None:
            raise Recorder.fail
        Recorder.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def create_commit(self, repo_id: str, operations, **kwargs) -> None:
        Recorder.calls.append(("create_commit", repo_id, {op.path_in_repo: op.path_or_fileobj for op in operations}))


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """Online, logged in with TOKEN, HfApi recording; no login cache of the real user."""
    import huggingface_hub
    from huggingface_hub import constants

    from ftkit import hub as ftkit_hub

    Recorder.calls, Recorder.fail = [], None
    monkeypatch.setattr(huggingface_hub, "HfApi", Recorder)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
    monkeypatch.setattr(ftkit_hub, "unreachable_reason", lambda: None)
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return Recorder


def pushed(recorder) -> dict[str, str]:
    commits = [c for c in recorder.calls if c[0] == "create_commit"]
    assert len(commits) == 1, recorder.calls
    return commits[0][2]


def one_line_error(code: int, out: str, err: str) -> str:
    assert code == 2, err
    assert TOKEN not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_dry_run_lists_what_would_go_and_uploads_nothing(cli, run, hub):
    code, out, err = cli("push", run, REPO, "--dry-run")
    assert code == 0, err
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert listed[0] == "README.md" and {"model.safetensors", "config.json", "metrics.json", "config.yaml", "plots/loss.png"} <= set(listed)
    assert not any(p.startswith(("checkpoints", "notes", ".", "log")) or "elsewhere" in p or ".DS_Store" in p for p in listed), listed
    assert f"to {REPO}" in out and "token: found" in out
    assert "license is 'other'" in err  # the card's placeholder is pointed at before sharing
    assert TOKEN not in out + err
    assert hub.calls == []  # not even an HfApi made


def test_push_sends_the_model_folder_with_card_plots_metrics_and_config(cli, run, hub):
    code, out, err = cli("push", run, REPO)
    assert code == 0, err
    assert TOKEN not in out + err
    assert ("HfApi", TOKEN) in hub.calls
    create = next(c for c in hub.calls if c[0] == "create_repo")
    assert create[1] == REPO and create[2]["private"] is None and create[2]["exist_ok"] is True
    files = pushed(hub)
    model = run / "model"
    expected = {p.relative_to(model).as_posix() for p in model.rglob("*") if p.is_file() and not p.is_symlink() and not p.name.startswith(".")}
    assert set(files) == expected | {"metrics.json", "config.yaml"}
    assert files["README.md"] == str(model / "README.md") and files["config.yaml"] == str(run / "config.yaml")
    # every plot the card shows is at the path its link names, relative to README.md at the repo root
    links = [line.split("](")[1].rstrip(")") for line in (model / "README.md").read_text().splitlines() if line.startswith("![")]
    assert len(links) >= 2 and all(link.startswith("plots/") and link in files for link in links), links
    assert f"https://huggingface.co/{REPO}" in out


def test_private_creates_a_private_repo(cli, run, hub):
    code, _, err = cli("push", run, REPO, "--private")
    assert code == 0, err
    assert next(c for c in hub.calls if c[0] == "create_repo")[2]["private"] is True


def test_adapter_pushes_adapter_folder_and_each_folder_mixup_is_one_line(cli, run, lora_run, hub):
    line = one_line_error(*cli("push", run, REPO, "--adapter"))
    assert "no LoRA adapter" in line and "without --adapter" in line
    line = one_line_error(*cli("push", lora_run, REPO))
    assert "pass --adapter" in line
    assert hub.calls == []
    code, _, err = cli("push", lora_run, REPO, "--adapter")
    assert code == 0, err
    assert "base model is a local folder (/home/me/bert" in err  # said: others could not load it
    files = pushed(hub)
    assert {"adapter_config.json", "model_config.json", "README.md", "plots/loss.png", "metrics.json"} <= set(files)
    assert all(str(lora_run / "adapter") in source or name in ("metrics.json", "config.yaml") for name, source in files.items())


def test_logged_out_offline_unreachable_and_bad_repo_id_are_one_line_each(cli, run, hub, monkeypatch):
    from huggingface_hub import constants

    from ftkit import hub as ftkit_hub

    line = one_line_error(*cli("push", run, "not/a/repo"))
    assert "not a Hub repo id" in line and "OWNER/NAME" in line
    line = one_line_error(*cli("push", run, "bad--name"))
    assert "not a Hub repo id" in line
    monkeypatch.setattr(ftkit_hub, "unreachable_reason", lambda: "connection refused")
    line = one_line_error(*cli("push", run, REPO))
    assert "cannot be reached (connection refused)" in line
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    line = one_line_error(*cli("push", run, REPO))
    assert "HF_HUB_OFFLINE=1" in line and "--dry-run" in line
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(ftkit_hub, "unreachable_reason", lambda: None)
    monkeypatch.delenv("HF_TOKEN")
    line = one_line_error(*cli("push", run, REPO))
    assert "hf auth login" in line and "HF_TOKEN" in line
    assert hub.calls == []
    code, out, _ = cli("push", run, REPO, "--dry-run")  # a dry run needs no token, and says so
    assert code == 0 and "token: none" in out and "hf auth login" in out


@pytest.mark.parametrize(("status", "said"), [(401, "refused the token"), (403, "may not write there"), (500, "Boom")])
def test_hub_refusals_are_one_line_without_the_token(cli, run, hub, status, said):
    class HubAnswer(Exception):
        response = SimpleNamespace(status_code=status)

    hub.fail = HubAnswer(f"Boom for Authorization: Bearer {TOKEN}\nmore lines")
    code, out, err = cli("push", run, REPO)
    assert code == (1 if status == 500 else 2), err
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # after the card's notes
    assert TOKEN not in out + err and len(errors) == 1 and said in errors[0] and err.strip().endswith(errors[0]), err
    if status == 401:
        assert "hf auth login" in err


def test_a_card_the_hub_would_refuse_stops_the_push_before_anything_goes(cli, run, hub, tmp_path):
    broken = tmp_path / "run"
    shutil.copytree(run, broken, symlinks=True)
    readme = broken / "model" / "README.md"
    readme.write_text(readme.read_text().replace("pipeline_tag: text-classification", "pipeline_tag: text-classifier"))
    line = one_line_error(*cli("push", broken, REPO, "--dry-run"))
    assert "text-classifier" in line and str(readme) in line
    assert hub.calls == []


# ------------------------------------------------------------- the card's metadata, every family


def front(text: str) -> str:
    return f"---\n{text}\n---\n\n# card\n"


def recipe_scores(primary: str) -> dict:
    """A split's scores holding the recipe's (maybe nested) metric, a loss and a NaN."""
    scores: dict = {"loss": 0.5, "samples": 10, "accuracy": 0.75, "pearsonr": float("nan")}
    *groups, last = primary.split(".")
    inner = scores
    for group in groups:
        inner = inner.setdefault(group, {})
    inner[last] = 0.625
    return scores


@pytest.mark.parametrize("adapter", [False, True], ids=["model", "adapter"])
def test_card_metadata_of_every_recipe_parses_as_the_hub_would(adapter):
    """Every shipped recipe (every family, Hub and local data): huggingface_hub's parse of the
    front matter, the Hub's pipeline tags, repo ids, and a model-index of finite numbers."""
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    from ftkit import card
    from ftkit.push import HUB_PIPELINE_TAGS, card_problems
    from ftkit.recipes import all_recipes
    from ftkit.tasks import FAMILY_MODULES, get_task

    recipes = all_recipes()
    assert {r.config.task for r in recipes} == set(FAMILY_MODULES)  # every family
    for recipe in recipes:
        config = recipe.config
        tag = get_task(config.task).pipeline_tag(config)
        text = front(card.metadata_yaml(config, recipe_scores(config.metrics.primary), "test", tag, adapter))
        assert card_problems(text) == [], (recipe.name, card_problems(text))
        data = ModelCard(text).data  # huggingface_hub's own parse, model-index included
        assert data.pipeline_tag == tag and tag in HUB_PIPELINE_TAGS
        assert data.library_name == ("peft" if adapter else "transformers") and data.license == "other"
        assert data.base_model == config.model and data.datasets == ([config.data.dataset] if config.data.dataset else None)
        assert all(isinstance(m, str) for m in data.metrics)
        name, results = model_index_to_eval_results(yaml.safe_load(text.split("---")[1])["model-index"])
        values = {r.metric_name: r.metric_value for r in results}
        assert values[config.metrics.primary] == 0.625 and "loss" not in values and "pearsonr" not in values, (recipe.name, values)
        assert all(math.isfinite(v) and r.task_type == tag and r.dataset_type and r.dataset_name for r, v in zip(results, values.values()))


def test_card_problems_finds_what_the_hub_refuses():
    from ftkit.push import card_problems

    good = "pipeline_tag: text-classification\nlicense: other\nbase_model: org/model\ndatasets:\n- imdb\n"
    assert card_problems(front(good)) == []
    assert card_problems("# no front matter\n")
    assert "text-classifier" in card_problems(front(good.replace("text-classification", "text-classifier")))[0]
    assert "not a Hub id" in card_problems(front(good.replace("org/model", "/home/me/model")))[0]
    assert "not a Hub id" in card_problems(front(good.replace("- imdb", "- a/b/c")))[0]
    index = "model-index:\n- name: m\n  results:\n  - task: {type: text-classification}\n    dataset: {type: local, name: x}\n    metrics:\n    - {type: f1, value: %s}\n"
    assert card_problems(front(good + index % "0.5")) == []
    assert "finite number" in card_problems(front(good + index % ".nan"))[0]
    assert card_problems(front(good + "model-index:\n- name: m\n  results:\n  - task: {type: text-classification}\n"))  # no dataset
