"""Loading checkpoints (local folder or Hub id) with errors that say what to do next."""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftkit import hub
from ftkit.errors import FtkitError, first_line
from ftkit.launch import main_process
from ftkit.model_checks import check_files, check_load_report, check_tokenizer, check_tokenizer_files, damaged, read_json

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
ADAPTER_CONFIG = "adapter_config.json"  # a PEFT (LoRA) adapter folder
GGUF_SUFFIX = ".gguf"  # llama.cpp's single-file checkpoints: transformers reads them with gguf_file=


def is_model_folder(path: Path) -> bool:
    """A save_pretrained folder (config.json) or a LoRA adapter (adapter_config.json)."""
    return (path / "config.json").is_file() or (path / ADAPTER_CONFIG).is_file()


def is_gguf(source: str) -> bool:
    """A GGUF weights file: config, tokenizer and weights in one file, no config.json."""
    return str(source).lower().endswith(GGUF_SUFFIX)


def _pretrained_args(source: str) -> tuple[str, dict[str, Any]]:
    """What `from_pretrained` takes for a source: a .gguf file is named by its folder and gguf_file=."""
    if is_gguf(source):
        return str(Path(source).parent), {"gguf_file": Path(source).name}
    return source, {}


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


def load_pretrained(auto_class: Any, source: str, new_head: bool = False, **kwargs: Any) -> Any:
    """`auto_class.from_pretrained` under the load policy, with ftkit's errors, and its load
    report read: weights that do not fit config.json are refused, a few new ones noted.

    new_head: the task head (weights outside the base model) is expected to be new and is not
    reported (a classifier or tagger built on a base checkpoint).
    """
    from safetensors import SafetensorError

    check_weights(source)
    if Path(source).is_dir() and not _has_weights(Path(source)):  # else the loader blames "safetensors"
        raise FtkitError(
            f"{source}: no weights file (model.safetensors) in this folder, only a config. Pass the folder that "
            "save_pretrained wrote the model to"
        )
    if not POLICY.allow_pickle:
        kwargs["use_safetensors"] = True  # a Hub repo without safetensors is refused, not unpickled
    # Mismatched shapes come back in the load report, where ftkit tells head from body.
    kwargs.setdefault("ignore_mismatched_sizes", True)
    location, extra = _pretrained_args(source)
    if extra:
        import torch
        import transformers

        # Unpacked into plain float32 layers: packed GGUF blocks neither train nor save_pretrained
        # (a dequantized model does both, as safetensors), and the file's float16 is a storage format.
        kwargs.update(extra, dtype=torch.float32)
        if hasattr(transformers, "GgufConfig"):  # before it (transformers < 5.19) GGUF always loaded dequantized
            kwargs["quantization_config"] = transformers.GgufConfig(dequantize=True)
    # transformers' GGUF reader draws its own tqdm bar on stderr, past its progress-bar switch.
    quiet = contextlib.redirect_stderr(io.StringIO()) if extra else contextlib.nullcontext()
    try:
        with quiet:
            model, info = auto_class.from_pretrained(
                location, trust_remote_code=POLICY.trust_remote_code, output_loading_info=True, **kwargs
            )
    except OSError as err:
        if not POLICY.allow_pickle and "safetensors" in str(err).lower():
            raise _pickle_only(source) from None
        raise unreachable(source, err) from None
    except SafetensorError as err:  # a damaged file in the Hub cache (a local folder was checked above)
        raise damaged(f"model '{source}' (in the Hub cache)", first_line(err)) from None
    if note := check_load_report(model, info, _where(source), _weights_files(source), new_head):
        _note(note)
    return model


def check_weights(source: str) -> None:
    """Refuse a local folder whose weights cannot be loaded safely: pickle files only (unless
    --allow-pickle), or a damaged file (JSON, safetensors) or missing shard."""
    path = Path(source)
    if not path.is_dir():
        return
    check_files(path)
    if POLICY.allow_pickle or any(path.glob("*.safetensors")):
        return
    if _has_weights(path):
        raise _pickle_only(source)


def _has_weights(folder: Path) -> bool:
    """Whether a local folder holds a weights file: safetensors, or pickle."""
    return any(f.suffix == ".safetensors" or f.suffix in PICKLE_SUFFIXES for f in folder.iterdir())


def _weights_files(source: str) -> str:
    """The weights file(s) a message names: a local folder's safetensors files, or the .gguf file."""
    path = Path(source)
    if is_gguf(source):
        return path.name
    names = sorted(p.name for p in path.glob("*.safetensors")) if path.is_dir() else []
    return ", ".join(names[:2]) + (", ..." if len(names) > 2 else "") if names else "the weights"


def _where(source: str) -> str:
    """How a message names a model: its folder or .gguf file, or the Hub id."""
    return source if Path(source).is_dir() or is_gguf(source) else f"model '{source}'"


def _note(message: str) -> None:
    """A one-line note on stderr from the main process (stdout carries tables and predictions)."""
    if main_process():
        print(f"note: {message}", file=sys.stderr)


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


def model_source(name_or_path: str, task: Any = None) -> str:
    """A local model folder or .gguf file (checked) or a Hub id, as the loaders here receive it.

    task: the recipe's family module (ftkit.tasks), when known: it says whether a .gguf file
    fits, and what local model to pass instead of a Hub id that cannot load.
    """
    path = Path(name_or_path).expanduser()
    if is_gguf(name_or_path):  # a local file, never a Hub id: no Hub look-up
        return _gguf_source(path, task)
    if path.exists():
        if not path.is_dir():
            raise FtkitError(f"{path}: is a file; pass the model folder (the one holding config.json) or a .gguf file")
        if not is_model_folder(path):
            gguf = sorted(path.glob(f"*{GGUF_SUFFIX}"))
            raise FtkitError(
                f"{path}: no config.json in this folder, so it is not a transformers model folder "
                "(one written by save_pretrained). Pass that folder, or a Hub id like bert-base-uncased"
                + (f", or the GGUF file itself: --model {gguf[0]}" if gguf else "") + "."
            )
        return str(path)
    # Hub ids are 'name' or 'org/name'; anything else was meant as a local path.
    if name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1 or "\\" in name_or_path:
        raise FtkitError(f"{name_or_path}: no such model folder")
    # Not reachable and not cached: one line now, not 30 s of retries.
    hub.check_model(name_or_path, task.LOCAL_MODEL if task is not None else hub.LOCAL_FOLDER_HINT)
    return name_or_path


def _gguf_source(path: Path, task: Any) -> str:
    """A .gguf file, checked: it exists, the family can use one, and transformers can read it."""
    if not path.is_file():
        raise FtkitError(f"{path}: no such file")
    if task is not None and not task.GGUF:
        from ftkit.tasks import families  # lazily: ftkit.tasks' families import this module

        readers = " or ".join(name for name, family in families().items() if family.GGUF)
        raise FtkitError(
            f"{path}: ftkit takes a GGUF file for {readers} recipes only (`ftkit recipes list` shows each "
            f"recipe's family); for this one, {task.LOCAL_MODEL}"
        )
    try:
        import gguf  # noqa: F401  (transformers reads GGUF metadata through it)
    except ImportError:
        raise FtkitError(f"{path}: reading a GGUF file needs the gguf package: pip install gguf (or pip install 'ftkit[gguf]')") from None
    return str(path)


def load_model_config(name_or_path: str) -> Any:
    """The model's config.json (small and fast): lets us refuse a wrong model before any work."""
    from transformers import AutoConfig

    source = model_source(name_or_path)
    if (Path(source) / "config.json").is_file():  # a damaged one is named (transformers says "OSError")
        read_json(Path(source) / "config.json")
    location, extra = _pretrained_args(source)
    try:
        return AutoConfig.from_pretrained(location, trust_remote_code=POLICY.trust_remote_code, **extra)
    except OSError as err:
        raise unreachable(name_or_path, err) from None
    except (ValueError, KeyError) as err:
        if "trust_remote_code" in str(err):
            raise _needs_remote_code(name_or_path) from None
        damaged = "; the file may be incomplete or damaged: copy it again" if is_gguf(source) else ""
        raise FtkitError(f"{name_or_path}: cannot read its config ({first_line(err)[:200]}){damaged}") from None


def load_tokenizer(name_or_path: str, prefix_space: bool = False) -> Any:
    """The checkpoint's tokenizer, with a pad token (GPT-2 has none: reuse end-of-text).

    prefix_space: for input split into words, byte-level BPE tokenizers (GPT-2, RoBERTa)
    must treat every word as preceded by a space, or words are encoded as word pieces.
    """
    from transformers import AutoTokenizer

    source = model_source(name_or_path)
    if Path(source).is_dir():
        check_tokenizer_files(Path(source))
    location, extra = _pretrained_args(source)  # a GGUF file's tokenizer is rebuilt from its metadata
    try:
        trust = POLICY.trust_remote_code
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust, **extra)
        if prefix_space and getattr(tokenizer, "add_prefix_space", None) is False:
            tokenizer = AutoTokenizer.from_pretrained(location, add_prefix_space=True, trust_remote_code=trust, **extra)
    except OSError as err:
        raise unreachable(name_or_path, err) from None
    except (ValueError, TypeError, KeyError) as err:
        if "trust_remote_code" in str(err):
            raise _needs_remote_code(name_or_path) from None
        raise _tokenizer_error(name_or_path, err) from None
    except Exception as err:
        if type(err) is not Exception:  # the tokenizers library raises bare Exceptions for a malformed tokenizer.json
            raise
        raise _tokenizer_error(name_or_path, err) from None
    check_tokenizer(tokenizer, _where(source))
    if tokenizer.pad_token is None:
        # Padding positions are masked out, so any existing token will do; EOS is the convention.
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise FtkitError(f"{name_or_path}: the tokenizer has no pad, eos or unk token to pad with")
        tokenizer.pad_token = fallback
    return tokenizer


def _tokenizer_error(name: str, err: Exception) -> FtkitError:
    return FtkitError(
        f"{name}: cannot load its tokenizer ({type(err).__name__}: {first_line(err)[:200]}); its tokenizer "
        "files may be damaged: copy them again from the checkpoint the model came from"
    )


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


def check_max_length(model_config: Any, config: Any) -> None:
    """Refuse a --max-length (config: the RunConfig) beyond what the model's positions can read."""
    limit = max_positions(model_config)
    if limit and config.train.max_length > limit:
        raise FtkitError(f"--max-length {config.train.max_length} is beyond what '{config.model}' can read ({limit} tokens); use <= {limit}")


def unreachable(name: str, err: Exception) -> FtkitError:
    """The error for a model the loader could not fetch. The Hub was reachable (or the model
    cached) when model_source asked, so this is a typo, a private or gated repo, or a file the
    cache lacks; the offline case is named too, for a network that failed since."""
    return FtkitError(
        f"cannot load model '{name}' ({first_line(err)[:200]}). Check the id (a private or gated model "
        f"needs `hf auth login`); if you are offline, {hub.LOCAL_FOLDER_HINT}."
    )
