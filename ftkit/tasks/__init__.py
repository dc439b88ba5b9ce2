"""Task families: one module each, answering the protocol in `ftkit.tasks.family` (data and
functions, not subclasses). A new family is one module plus one line in FAMILY_MODULES.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, cast

from ftkit.errors import FtkitError

if TYPE_CHECKING:
    from ftkit.tasks.family import Family

# The registry: family name (a recipe's `task:`) -> the module implementing it. Importing this
# table is cheap (no family module loads until asked for), so config checks and --help read it.
FAMILY_MODULES = {
    "sequence-classification": "ftkit.tasks.classification",
    "token-classification": "ftkit.tasks.tokens",
    "seq2seq": "ftkit.tasks.seq2seq",
    "causal-lm": "ftkit.tasks.causal_lm",
    "image-classification": "ftkit.tasks.images",
    "speech-recognition": "ftkit.tasks.speech",
    "multi-label-classification": "ftkit.tasks.multilabel",
    "regression": "ftkit.tasks.regression",
    "masked-lm": "ftkit.tasks.mlm",
}


def family_names() -> list[str]:
    return list(FAMILY_MODULES)


def get_task(family: str) -> Family:
    """The module implementing `family`, checked to answer every member of the protocol."""
    if family not in FAMILY_MODULES:
        raise FtkitError(
            f"task family '{family}' is not available in this version of ftkit "
            f"(available: {', '.join(FAMILY_MODULES)})"
        )
    from ftkit.tasks.family import MEMBERS

    module = importlib.import_module(FAMILY_MODULES[family])
    missing = [name for name in MEMBERS if not hasattr(module, name)]
    if missing:  # say what a new family lacks at once, not with an AttributeError mid-run
        raise FtkitError(f"task family '{family}' ({module.__name__}) lacks {', '.join(missing)}: see ftkit/tasks/family.py")
    return cast("Family", module)


def families() -> dict[str, Family]:
    """Every registered family, by name (imports each module)."""
    return {name: get_task(name) for name in FAMILY_MODULES}
