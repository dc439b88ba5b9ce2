"""`ftkit push`: a finished run's model (or LoRA adapter) to a Hugging Face Hub model repo.

The repo's root is the run's model/ (or adapter/) folder as saved: weights, tokenizer, README.md
(the card) and plots/ (which the card shows as `plots/NAME.png`, relative to README.md, so the
links resolve on the Hub), plus the run's metrics.json and config.yaml (small, and they say what
the model is and how to rerun it). Never checkpoints/, log.jsonl, links, hidden files, or any
other file of the run folder. The token (HF_TOKEN or `hf auth login`'s cache) is never printed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftkit.errors import FtkitError, first_line
from ftkit.runs import human_size

# The run files that go beside the model folder's own, at the repo root.
RUN_EXTRAS = ("metrics.json", "config.yaml")
LOGIN = "run `hf auth login` (or set HF_TOKEN to a token with write access)"
PLOT_LINK = re.compile(r"\]\((plots/[^)\s]+)\)")  # how ftkit.card shows a plot: ![caption](plots/NAME)
# The Hub's pipeline tags (huggingface.js packages/tasks/src/pipelines.ts); the Hub refuses a card
# whose pipeline_tag is not one of them. One string: these are the Hub's task names, not ftkit's families.
HUB_PIPELINE_TAGS = frozenset("""
    text-classification token-classification table-question-answering question-answering zero-shot-classification
    translation summarization feature-extraction text-generation fill-mask sentence-similarity text-to-speech
    text-to-audio automatic-speech-recognition audio-to-audio audio-classification audio-text-to-text
    voice-activity-detection depth-estimation image-classification object-detection image-segmentation
    text-to-image image-to-text image-to-image image-to-video unconditional-image-generation video-classification
    reinforcement-learning robotics tabular-classification tabular-regression tabular-to-text table-to-text
    multiple-choice text-ranking text-retrieval time-series-forecasting text-to-video image-text-to-text
    visual-question-answering document-question-answering zero-shot-image-classification graph-ml mask-generation
    zero-shot-object-detection text-to-3d image-to-3d image-feature-extraction video-text-to-text
    keypoint-detection visual-document-retrieval any-to-any video-to-video other
""".split())


@dataclass(frozen=True)
class Upload:
    path_in_repo: str
    local: Path
    size: int


@dataclass
class Plan:
    """What a push sends: `files` into `repo_id`, from the run's `folder` (model/ or adapter/)."""

    repo_id: str
    folder: Path
    files: list[Upload]
    notes: list[str] = field(default_factory=list)  # one line each, said before anything goes

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def plan(run_dir: Path, repo_id: str, adapter: bool) -> Plan:
    """The files a push of `run_dir` would send, checked: repo id, folder, card metadata."""
    check_repo_id(repo_id)
    folder = model_folder(run_dir, adapter)
    notes: list[str] = []
    files = _folder_files(folder, notes)
    taken = {f.path_in_repo for f in files}
    for name in RUN_EXTRAS:
        path = run_dir / name
        if path.is_file() and not path.is_symlink() and name not in taken:
            files.append(Upload(name, path, path.stat().st_size))
    readme = folder / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8")
        if problems := card_problems(text):
            raise FtkitError(f"{readme}: the Hub would refuse this card's metadata ({problems[0]}); fix its front matter (between the --- lines) and push again")
        files += _missing_plots(text, run_dir, {f.path_in_repo for f in files}, notes)
        notes += _card_notes(text, readme)
    else:
        notes.append(f"{folder} has no README.md: the repo gets no model card")
    notes += _adapter_notes(folder)
    return Plan(repo_id, folder, sorted(files, key=lambda f: (f.path_in_repo != "README.md", f.path_in_repo)), notes)


def check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise FtkitError(
            f"'{repo_id[:120]}' is not a Hub repo id: use NAME or OWNER/NAME (letters, digits, '-', '_', '.'; "
            "at most 96 characters; no '--' or '..'), e.g. your-name/sentiment-bert"
        ) from None


def model_folder(run_dir: Path, adapter: bool) -> Path:
    """run_dir/model, or run_dir/adapter with --adapter; each missing case names what to do."""
    if not run_dir.is_dir():
        raise FtkitError(f"{run_dir}: no such folder; pass the --output-dir of a finished `ftkit finetune`")
    model, lora = run_dir / "model", run_dir / "adapter"
    has_model, has_adapter = (model / "config.json").is_file(), (lora / "adapter_config.json").is_file()
    if adapter:
        if has_adapter:
            return lora
        raise FtkitError(f"{run_dir} has no LoRA adapter (no adapter/adapter_config.json): it was not a --lora run; push its model without --adapter")
    if has_model:
        return model
    if has_adapter:
        raise FtkitError(f"{run_dir} is a LoRA run without a merged model/: pass --adapter to push its adapter (or rerun with --lora --merge for a standalone model)")
    if (run_dir / "checkpoints").is_dir():
        raise FtkitError(f"{run_dir} has no model/ yet: the run did not finish; finish it with `ftkit finetune {run_dir / 'config.yaml'} --resume {run_dir}`, then push")
    raise FtkitError(f"{run_dir}: not an ftkit run folder (no model/config.json or adapter/); pass the --output-dir of a finished `ftkit finetune`")


def _folder_files(folder: Path, notes: list[str]) -> list[Upload]:
    """Every plain file under `folder`, by its path inside it; links and hidden entries stay
    behind (a link may point anywhere on this machine; a dot-file is no part of a saved model)."""
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_symlink():
            notes.append(f"{path} is a link: not pushed (push sends plain files only)")
        elif path.is_file():
            files.append(Upload(rel.as_posix(), path, path.stat().st_size))
    return files


def _missing_plots(card: str, run_dir: Path, taken: set[str], notes: list[str]) -> list[Upload]:
    """The plots the card shows that the folder lacks, from the run's plots/ (so every link
    resolves on the Hub); one the run does not have either is a note."""
    extra = []
    for link in dict.fromkeys(PLOT_LINK.findall(card)):
        if link in taken:
            continue
        path = run_dir / link
        if path.is_file() and not path.is_symlink():
            extra.append(Upload(link, path, path.stat().st_size))
        else:
            notes.append(f"the card shows {link}, which the run does not have: that image will be missing on the Hub")
    return extra


def _card_notes(card: str, readme: Path) -> list[str]:
    """What to look at in the card before sharing it."""
    data = _front_matter(card)
    if isinstance(data, dict) and data.get("license") == "other" and not data.get("license_name"):
        return [f"the card's license is 'other' (a placeholder): set the license the base model and the data allow in {readme}"]
    return []


def _adapter_notes(folder: Path) -> list[str]:
    """An adapter trained on a local base model names it by its path on this machine."""
    import json

    config = folder / "adapter_config.json"
    try:
        base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path") if config.is_file() else None
    except (OSError, ValueError, AttributeError):
        return []
    if isinstance(base, str) and Path(base).is_absolute():
        return [f"the adapter's base model is a local folder ({base}, in {config}): others cannot load it until that names a Hub model id"]
    return []


def _front_matter(card: str) -> Any:
    import yaml
    from huggingface_hub.repocard import REGEX_YAML_BLOCK

    match = REGEX_YAML_BLOCK.search(card)
    return yaml.safe_load(match.group(2)) if match else None


def card_problems(card: str) -> list[str]:
    """Why the Hub would refuse a card's metadata ([] when it would not), checked offline:
    huggingface_hub's own parse (ModelCardData, model-index through model_index_to_eval_results)
    and the fields the Hub validates (pipeline_tag, repo ids, model-index values)."""
    import yaml
    from huggingface_hub import ModelCardData

    try:
        data = _front_matter(card)
    except yaml.YAMLError as err:
        return [f"its front matter is not YAML: {first_line(err)}"]
    if not isinstance(data, dict):
        return ["no front matter (a YAML mapping between --- lines at the top)"]
    try:
        ModelCardData(**data)
    except Exception as err:  # its parse of a malformed field: ValueError, TypeError, AttributeError
        return [first_line(err)[:200]]
    problems = []
    tag = data.get("pipeline_tag")
    if tag is not None and tag not in HUB_PIPELINE_TAGS:
        problems.append(f"pipeline_tag {tag!r} is not one of the Hub's tasks")
    for key in ("license", "library_name", "license_name", "license_link"):
        if key in data and not isinstance(data[key], str):
            problems.append(f"{key} must be a string")
    for key in ("tags", "metrics", "language"):
        if key in data and not _strings(data[key]):
            problems.append(f"{key} must be a string or a list of strings")
    for key in ("base_model", "datasets"):
        if key in data:
            problems += [f"{key}: {p}" for p in _repo_ids(data[key])]
    problems += _model_index_problems(data.get("model-index"))
    return problems


def _strings(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def _repo_ids(value: Any) -> list[str]:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not _strings(value):
        return ["must be a Hub id or a list of them"]
    problems = []
    for repo_id in [value] if isinstance(value, str) else value:
        try:
            validate_repo_id(repo_id)
        except HFValidationError:
            problems.append(f"{repo_id!r} is not a Hub id")
    return problems


def _model_index_problems(index: Any) -> list[str]:
    """Each result names its task and dataset, and each metric value is a finite number or a string."""
    problems = []
    for entry in index or []:
        for result in entry.get("results") or []:
            task = result["task"]["type"]
            if task not in HUB_PIPELINE_TAGS:
                problems.append(f"model-index task type {task!r} is not one of the Hub's tasks")
            for metric in result.get("metrics") or []:
                value = metric.get("value")
                if isinstance(value, bool) or not isinstance(value, (int, float, str)) or (isinstance(value, float) and not math.isfinite(value)):
                    problems.append(f"model-index metric {metric.get('type')!r} has value {value!r}: a finite number or a string is needed")
    return problems


def token_for_push() -> str:
    """The token a push sends, after checking the Hub can be reached: each failure is one line."""
    from huggingface_hub import constants, get_token

    from ftkit import hub

    if constants.is_offline_mode():
        raise FtkitError("cannot push: HF_HUB_OFFLINE=1 is set (offline); unset it to reach the Hub (--dry-run lists what would go without it)")
    if (reason := hub.unreachable_reason()) is not None:
        raise FtkitError(f"cannot push: the Hub ({constants.ENDPOINT[:150]}) cannot be reached ({reason}); check the network or proxy and push again")
    token = get_token()
    if not token:
        raise FtkitError(f"cannot push: not logged in to the Hugging Face Hub; {LOGIN}")
    return token


def upload(plan: Plan, private: bool, token: str) -> str:
    """Create the repo if needed and send the plan's files in one commit; the repo's URL."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    try:
        # private=None: a new repo gets its owner's default visibility; an existing one keeps its own
        url = api.create_repo(plan.repo_id, private=True if private else None, repo_type="model", exist_ok=True)
        operations = [CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=str(f.local)) for f in plan.files]
        api.create_commit(plan.repo_id, operations, commit_message=f"Upload {plan.folder.name}/ of an ftkit run", repo_type="model")
    except KeyboardInterrupt:  # the commit is atomic: files sent so far are not in the repo
        raise FtkitError(f"interrupted: nothing was committed to {plan.repo_id} (it may exist now, as before or empty); push again", exit_code=130) from None
    except Exception as err:  # the Hub's answer, said in one line without the token
        raise _hub_error(err, plan.repo_id, token) from None
    return str(url)


def _hub_error(err: Exception, repo_id: str, token: str) -> FtkitError:
    """One line for a failed create or upload: what the Hub said, and the fix."""
    status = getattr(getattr(err, "response", None), "status_code", None)
    said = first_line(err).replace(token, "***")[:300]  # a library message never should hold it; make sure
    if status == 401:
        return FtkitError(f"cannot push to {repo_id}: the Hub refused the token (401 Unauthorized); {LOGIN}")
    if status == 403:
        return FtkitError(f"cannot push to {repo_id}: the token may not write there (403 Forbidden); use a write token for that owner, or push to your own namespace")
    return FtkitError(f"cannot push to {repo_id}: {type(err).__name__}: {said}", exit_code=1)


def listing(plan: Plan, private: bool) -> str:
    """--dry-run: the files a push would send, each with its size and source."""
    from huggingface_hub import get_token

    where = "private" if private else "a new repo public unless its owner's default is private"
    lines = [f"would push {len(plan.files)} files ({human_size(plan.size)}) from {plan.folder} to {plan.repo_id} ({where}):"]
    width = max((len(f.path_in_repo) for f in plan.files), default=0)
    lines += [f"  {f.path_in_repo:<{width}}  {human_size(f.size):>9}  {f.local}" for f in plan.files]
    lines.append("token: found" if get_token() else f"token: none; before pushing, {LOGIN}")
    return "\n".join(lines)

