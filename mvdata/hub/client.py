"""The ``huggingface_hub`` client as publish and pull use it: made lazily (the core install has no
``hub`` extra), its failures turned into one :class:`HubError` whose message never carries a
token.

The token itself is never read here except to blank it out of messages: ``HfApi`` takes it from
``huggingface_hub``'s usual places (``HF_TOKEN``, then the token saved by ``hf auth login``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from huggingface_hub import HfApi

T = TypeVar("T")

#: What a Hugging Face token looks like (user and org tokens start with ``hf_``).
_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{6,}")
#: Any bearer credential an error message might quote (a server echoing a request header).
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[^\s'\"]+")


class HubError(RuntimeError):
    """A Hub request failed (network, HTTP status, a malformed answer); the message is redacted."""


def hub_api() -> HfApi:
    """An ``HfApi`` on ``HF_ENDPOINT`` (default https://huggingface.co) with the usual token."""
    try:
        from huggingface_hub import HfApi
    except ModuleNotFoundError as exc:
        raise ValueError(
            "huggingface_hub is not installed: install the hub extra (pip install '.[hub]')"
        ) from exc
    return HfApi()


def _client_errors() -> tuple[type[BaseException], ...]:
    """Exceptions a Hub call raises when it fails: ``HfHubHTTPError`` and other ``OSError``s
    (file consistency checks), the HTTP client's transport errors (``httpx``, or its fork
    ``httpx2`` that huggingface_hub 2.x uses; not subclasses of ``OSError``), ``RuntimeError``
    (an LFS upload that failed is re-raised as one), ``ValueError`` and ``KeyError`` (a
    malformed answer)."""
    errors: list[type[BaseException]] = [OSError, RuntimeError, ValueError, KeyError]
    for name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(name).HTTPError)
        except ModuleNotFoundError:
            continue
    return tuple(errors)


def redact(text: str) -> str:
    """``text`` without the current token or anything that looks like a credential."""
    try:
        from huggingface_hub import get_token

        token = get_token()
    except ModuleNotFoundError:
        token = None
    if token:
        text = text.replace(token, "***")
    return _BEARER_RE.sub(r"\1***", _TOKEN_RE.sub("hf_***", text))


def _describe(exc: BaseException) -> str:
    """The exception and its causes as one line (``RuntimeError: ... <- HfHubHTTPError: ...``)."""
    parts, seen = [], set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        msg = " ".join(str(cur).split())
        parts.append(f"{type(cur).__name__}: {msg}" if msg else type(cur).__name__)
        cur = cur.__cause__ or cur.__context__
    return " <- ".join(parts)


def hub_call(what: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``; a failing Hub call becomes ``HubError("{what}: ...")``, redacted.

    The original exception is neither chained nor kept as context (the ``HubError`` is raised
    after the ``except`` block, in a frame that handles nothing): its message, its causes and
    its traceback's locals may quote a request's credentials. Its types and messages, redacted,
    are in the ``HubError``'s message.
    """
    try:
        return fn(*args, **kwargs)
    except HubError:
        raise
    except _client_errors() as exc:
        message = redact(f"{what}: {_describe(exc)}")
    raise HubError(message)
