"""Can the Hugging Face Hub be reached? Asked once, in seconds, before a Hub id is loaded.

Without HF_HUB_OFFLINE, huggingface_hub retries a failed look-up five times with backoff and
logs every try: on a machine without a route to the Hub, a model id that is not cached printed
11 lines over ~30 s before ftkit's error, and a cached one loaded only after ~3 minutes of
retries (one series per optional file). ftkit asks the endpoint once instead: unreachable and
cached -> offline mode, as HF_HUB_OFFLINE=1 would give; unreachable and not cached -> one error
line at once.
"""

from __future__ import annotations

import functools
import threading

from ftkit.errors import FtkitError, first_line

PROBE_TIMEOUT_S = 3.0  # connect + first byte; a Hub that answers at all answers well within this
# When the task family is not known; each family says what fits it (ftkit.tasks: LOCAL_MODEL).
LOCAL_FOLDER_HINT = "pass a local folder: --model /path/to/model (one that save_pretrained wrote, with config.json)"


def check_model(repo_id: str, advice: str = LOCAL_FOLDER_HINT) -> None:
    """Make sure a Hub model id can load without minutes of retries.

    Raises FtkitError (one line, naming HF_HUB_OFFLINE and ending with `advice`: what local
    model to pass instead) when it is not cached and cannot be downloaded: offline mode is on,
    or the Hub does not answer. When the Hub does not answer but the model is cached, this
    process goes offline and loads it from the cache.
    """
    from huggingface_hub import constants

    cached = is_cached(repo_id)
    if constants.is_offline_mode():
        if cached:
            return  # huggingface_hub reads the cache itself, without look-ups
        raise FtkitError(
            f"cannot load model '{repo_id}': HF_HUB_OFFLINE=1 is set (offline) and it is not in the local "
            f"Hub cache ({str(constants.HF_HUB_CACHE)[:150]}). Unset HF_HUB_OFFLINE to download it, or {advice}."
        )
    reason = unreachable_reason()
    if reason is None:
        return
    if cached:
        # What HF_HUB_OFFLINE=1 sets (read at import): every look-up in this process, including
        # those transformers makes without local_files_only (adapter_config.json), reads the cache.
        constants.HF_HUB_OFFLINE = True
        return
    raise FtkitError(
        f"cannot load model '{repo_id}': the Hub ({constants.ENDPOINT[:150]}) cannot be reached ({reason}) and the "
        f"model is not in the local cache. If you are offline, {advice}; set HF_HUB_OFFLINE=1 "
        "to skip Hub look-ups (cached models only)."
    )


def prepare_dataset() -> str | None:
    """Before a Hub dataset loads: when the Hub does not answer (and offline mode is off), go
    offline so `datasets` reads its cache at once instead of retrying for half a minute; returns
    why the Hub is unreachable (for the error if the cache lacks the dataset), else None."""
    from huggingface_hub import constants

    if constants.is_offline_mode() or (reason := unreachable_reason()) is None:
        return None
    import datasets

    constants.HF_HUB_OFFLINE = True  # both libraries read these at import; set them as the variables would
    datasets.config.HF_HUB_OFFLINE = True
    return reason


def is_cached(repo_id: str) -> bool:
    """Whether the local Hub cache holds the model's config.json (what every load reads first)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id: the load reports it
        return False


@functools.cache
def unreachable_reason() -> str | None:
    """Why the Hub endpoint (HF_ENDPOINT aware, through huggingface_hub's own HTTP session, so
    proxies and certificates are as for a download) does not answer, or None when it does.

    Any HTTP answer counts as reachable. A thread bounds the wait: name resolution is not
    covered by the HTTP client's timeout. Asked once per process.
    """
    from huggingface_hub import constants

    result: list[str | None] = []
    probe = threading.Thread(target=lambda: result.append(_head(constants.ENDPOINT)), daemon=True)
    probe.start()
    probe.join(PROBE_TIMEOUT_S + 1)
    return result[0] if result else f"no answer within {PROBE_TIMEOUT_S:.0f} s"


def _head(url: str) -> str | None:
    """One HEAD request without retries: None when anything answers, else the error's first line."""
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub.utils import get_session

    try:
        get_session().head(url, timeout=PROBE_TIMEOUT_S, follow_redirects=False)
    except httpx2.TransportError as err:  # DNS, refused, timeout, proxy, TLS: unreachable
        return first_line(err)[:200]
    except Exception:  # anything else is not a verdict on the network: the real load decides
        return None
    return None
