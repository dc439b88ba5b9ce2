"""What a model must hold to be used, checked before (and right after) it loads.

transformers copes quietly with a broken model: a folder without tokenizer files gets an empty
tokenizer (every word [UNK]), weights that do not fit config.json are initialised at random
(the load report that says so is muted), and a damaged file is an internal error. Each check
here refuses such a model in one line that names the file or folder and the next step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ftkit.bounded import shown
from ftkit.errors import FtkitError, first_line

# The JSON files transformers and PEFT read from a model folder (ftkit's LoRA runs add model_config.json).
JSON_FILES = (
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "added_tokens.json", "vocab.json", "preprocessor_config.json", "adapter_config.json", "model_config.json",
)
TOKENIZER_NEEDS = (
    "tokenizer.json, or tokenizer_config.json with its vocabulary (vocab.txt, vocab.json + merges.txt, "
    "spiece.model, sentencepiece.bpe.model, tokenizer.model, ...)"
)
# A text that every real tokenizer can spell (the digits too: vocabularies of any script hold them).
PROBE_TEXT = "The 3 films were great, and 42 people saw them."
MIN_VOCABULARY = 10  # fewer regular tokens than this cannot spell text; an empty tokenizer has 0-1
MOST = 0.5  # more than this share of body weights new: the checkpoint is not these weights' model
SHOWN = 2  # weight names a message quotes


# ---------------------------------------------------------------------------------- damaged files


def check_files(folder: Path) -> None:
    """Refuse a local model folder with a damaged JSON or safetensors file, or a missing shard."""
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        if path.name in JSON_FILES or path.name.endswith(".index.json"):
            read_json(path)
        elif path.suffix == ".safetensors":
            _check_safetensors(path)
    for index in sorted(folder.glob("*.safetensors.index.json")):
        _check_shards(index)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file of a model folder; a file that does not parse is damaged."""
    try:
        value = json.loads(path.read_bytes())
    except OSError as err:
        raise FtkitError(f"{path}: cannot read it ({err.strerror or err}); check its permissions") from None
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError, nesting too deep
        raise damaged(path, f"not valid JSON: {first_line(err)[:100]}") from None
    if not isinstance(value, dict):
        raise damaged(path, f"a JSON {type(value).__name__}, not an object")
    return value


def damaged(path: Path | str, why: str) -> FtkitError:
    return FtkitError(
        f"{path}: the file is damaged ({why}), e.g. truncated by an interrupted download or copy. "
        "Download or copy it again, or save the model again (save_pretrained)"
    )


def _check_safetensors(path: Path) -> None:
    """Parse the header as the loader will (cheap: memory-mapped, no tensor is read)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy"):
            pass
    except SafetensorError as err:
        raise damaged(path, f"safetensors: {first_line(err)[:120]}") from None
    except OSError as err:
        raise FtkitError(f"{path}: cannot read it ({err.strerror or err}); check its permissions") from None


def _check_shards(index: Path) -> None:
    """Every shard a sharded checkpoint's index lists must be there."""
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise damaged(index, "no 'weight_map' of weight name -> file")
    missing = sorted({f for f in weight_map.values() if not (index.parent / f).is_file()})
    if missing:
        raise FtkitError(
            f"{index.parent}: {len(missing)} weight file(s) listed in {index.name} are missing "
            f"({', '.join(m[:80] for m in missing[:SHOWN])}): the download or copy is incomplete; fetch the whole folder again"
        )


# ---------------------------------------------------------------------------------- tokenizer


def check_tokenizer_files(folder: Path) -> None:
    """Refuse a local model folder without the files its tokenizer class reads.

    Only when every vocabulary file is absent: a partial set goes on to the loader, and what it
    builds is checked by check_tokenizer. A class that reads no file (byte level) passes.
    """
    if (folder / "tokenizer.json").is_file():
        return
    tokenizer_class = _tokenizer_class(folder)
    if tokenizer_class is None:  # unknown here (e.g. remote code): check_tokenizer judges the result
        return
    files = getattr(tokenizer_class, "vocab_files_names", {}).values()
    needed = [f for f in files if f not in ("tokenizer.json", "tokenizer_config.json")]
    if not needed or any((folder / f).is_file() for f in needed):
        return
    raise FtkitError(
        f"{folder}: no tokenizer files. Its {tokenizer_class.__name__} needs tokenizer.json or "
        f"{' + '.join(needed)} (with tokenizer_config.json); the folder holds {_listing(folder)}. Copy the "
        "tokenizer files from the checkpoint the model came from (tokenizer.save_pretrained(folder))"
    )


def _listing(folder: Path, most: int = 6) -> str:
    """Some names in a folder, each cut short: a message never holds an unbounded listing."""
    names = sorted(p.name[:60] for p in folder.iterdir())
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "") if names else "nothing"


def _tokenizer_class(folder: Path) -> type | None:
    """The class AutoTokenizer would build: tokenizer_config.json's, else the model type's."""
    from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING_NAMES, tokenizer_class_from_name

    def field(name: str, key: str) -> Any:
        path = folder / name
        return read_json(path).get(key) if path.is_file() else None

    name = field("tokenizer_config.json", "tokenizer_class") or TOKENIZER_MAPPING_NAMES.get(field("config.json", "model_type") or "")
    if isinstance(name, (tuple, list)):  # (slow, fast) in older mappings
        name = next((n for n in name if n), None)
    if not isinstance(name, str):
        return None
    try:
        return tokenizer_class_from_name(name)
    except Exception:  # a class this transformers does not have: leave it to the loader
        return None


def check_tokenizer(tokenizer: Any, where: str) -> None:
    """Refuse a tokenizer that cannot spell text: a tiny vocabulary, or a probe sentence that
    comes out as unknown tokens only (what transformers builds when the vocabulary is missing)."""
    specials = set(tokenizer.all_special_ids)
    regular = len(tokenizer) - len(specials)
    ids = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
    spelled = tokenizer.decode([i for i in ids if i not in specials])  # unknown tokens are special
    if regular >= MIN_VOCABULARY and any(ch.isalnum() for ch in spelled):
        return
    tokens = shown(tokenizer.convert_ids_to_tokens(ids))
    raise FtkitError(
        f"{where}: its tokenizer is unusable ({regular} regular tokens; {PROBE_TEXT!r} becomes {tokens}), so "
        f"its vocabulary files are missing or broken. A tokenizer needs {TOKENIZER_NEEDS}: copy them from the "
        "checkpoint the model came from"
    )


# ---------------------------------------------------------------------------------- load report


def check_load_report(model: Any, info: dict[str, Any], where: str, weights: str, new_head: bool) -> str | None:
    """Refuse weights that do not fit config.json; a note when a few body weights are new.

    info: from_pretrained(..., output_loading_info=True); weights: the file(s) a message names.
    new_head: the weights outside the base model (a classifier's or tagger's head) are expected
    to be new, so they pass without a word.
    """
    head = head_keys(model) if new_head else set()
    body = [k for k in model.state_dict() if k not in head]
    mismatched = sorted((k, tuple(c), tuple(m)) for k, c, m in info.get("mismatched_keys", ()) if k not in head)
    if mismatched:
        key, in_checkpoint, in_config = mismatched[0]
        more = f" (and {len(mismatched) - 1} more)" if len(mismatched) > 1 else ""
        raise FtkitError(
            f"{where}: config.json does not match {weights}: {key[:100]} is {list(in_checkpoint)} there but "
            f"config.json makes it {list(in_config)}{more}. Use the config.json saved with these weights"
        )
    missing = sorted(k for k in info.get("missing_keys", ()) if k not in head)
    if not missing:
        return None
    names = ", ".join(k[:100] for k in missing[:SHOWN]) + (", ..." if len(missing) > SHOWN else "")
    word = "body weights" if new_head else "weights"
    if len(missing) > MOST * len(body):
        raise FtkitError(
            f"{where}: {len(missing)} of {len(body)} {word} are not in the checkpoint ({names}): config.json does "
            "not match the weights, so the model would be mostly random. Use the config.json saved with these weights"
        )
    return f"{where}: {len(missing)} of {len(body)} {word} are not in the checkpoint and start random ({names})"


def head_keys(model: Any) -> set[str]:
    """State-dict keys outside the base model (the task head); none when the model is its own base (T5)."""
    if model.base_model is model:
        return set()
    prefix = model.base_model_prefix + "."
    return {k for k in model.state_dict() if not k.startswith(prefix)}
