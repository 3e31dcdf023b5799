"""Whether the Hugging Face hub can be reached, found out in a few seconds.

Without a network, ``datasets`` retries each request five times with back-off (about 20 s a
split, 40 s before a run's first error) before it gives up. A run that loads GLUE or a task
file's dataset from the hub asks here first (once per process) and fails at once, naming
``--data-dir``. With ``HF_HUB_OFFLINE`` set nothing is probed: ``datasets`` then reads its
cache, or fails at once by itself.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import urllib.parse
import urllib.request

DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_SECONDS = 3.0  # for the name lookup and again for the connection
# What an error adds when the hub cannot be reached: a dataset downloaded before still loads.
CACHE_HINT = "a copy in the datasets cache is used with HF_HUB_OFFLINE=1"


def offline_mode() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) set to a true value, as huggingface_hub reads it."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def require_hub(what: str, instead: str) -> None:
    """Fail at once, before ``datasets`` retries, when the hub cannot be reached: ``what`` could
    not be loaded (it cannot be reached, and why); ``instead`` is what to do (then the cache hint)."""
    from mtlvsift.errors import MtlvsiftError

    problem = hub_unreachable()
    if problem:
        raise MtlvsiftError(f"Could not load {what} from the Hugging Face hub: it cannot be reached "
                            f"({problem}). {instead}; {CACHE_HINT}.")


@functools.cache
def hub_unreachable() -> str | None:
    """Why the hub cannot be reached (``huggingface.co:443: [Errno -2] Name or service not
    known``), or None when it answers or offline mode is set. The hub is ``$HF_ENDPOINT`` where
    set; with an https proxy configured, the proxy is what must answer."""
    if offline_mode():
        return None
    endpoint = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT)
    host, port = endpoint.hostname or "", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    proxy = urllib.request.getproxies().get(endpoint.scheme or "https")
    if proxy and not urllib.request.proxy_bypass(host):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = parts.hostname or "", parts.port or 80
    return _connection_problem(host, port)


def _connection_problem(host: str, port: int) -> str | None:
    """Why a TCP connection to ``host:port`` cannot be made, within 2 x ``PROBE_SECONDS``
    (the name lookup runs in a thread: it has no timeout of its own)."""
    outcome: dict[str, OSError] = {}

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
        except OSError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=connect, name="hub-probe", daemon=True)
    thread.start()
    thread.join(2 * PROBE_SECONDS)
    if thread.is_alive():
        return f"{host}:{port}: no answer within {2 * PROBE_SECONDS:g} s"
    if "error" in outcome:
        return f"{host}:{port}: {outcome['error']}"
    return None
