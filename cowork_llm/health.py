"""Is the provider reachable, and does it accept our key? Without spending quota.

:func:`check_health` asks ``GET {base_url}/models`` — a listing that costs no completion
tokens — with a short timeout, and sums the answer up in a :class:`HealthStatus` whose
``detail`` names the failure in one phrase (DNS, refused, TLS, timeout, 401, 404, 5xx).
It never raises for a network or HTTP failure, and the key never appears in ``detail``.
"""

import json
import time
import zlib
from dataclasses import dataclass
from typing import Any, Dict, Optional, Set, Tuple

import requests

from .config._sections import ModelConfig
from .errors import MissingApiKeyError
from .providers import _body, _guard, auth_headers
from .providers._redact import redact
from .providers._sessions import USER_AGENT, check_transport, new_session
from .providers._transport import describe_transport_failure

__all__ = ["HealthStatus", "check_health"]


@dataclass(frozen=True)
class HealthStatus:
    """``ok`` when the provider answered 2xx; ``latency_ms`` of the check (also on
    failure); ``detail`` one phrase for a person, starting with the host."""

    ok: bool
    latency_ms: float
    detail: str


def check_health(model: ModelConfig, *, timeout: float = 5.0,
                 session: Optional[requests.Session] = None,
                 api_key: Optional[str] = None) -> HealthStatus:
    """Check ``model``'s provider with one ``GET {base_url}/models``.

    ``api_key`` replaces ``model.api_key`` (a key from ``api_key_command``); ``session``
    lets a client reuse its connections. Redirects are not followed (the key stays with
    the configured host; a redirect means base_url is wrong).

    Raises:
        ConfigError: ``base_url`` is plain http to a non-loopback host without
            ``allow_insecure_http`` (the key would travel unencrypted).
        MissingApiKeyError: no key to check (``api_key_command`` not run yet).
    """
    key = model.api_key if api_key is None else api_key
    if not key:
        raise MissingApiKeyError("llm.model.api_key is empty: set COWORK_LLM_API_KEY or model.api_key "
                                 "in config.toml (a key from api_key_command must be passed as api_key)")
    check_transport(model.base_url, model.host, model.allow_insecure_http, key="llm.model")
    url = model.base_url.rstrip("/") + "/models"
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    headers.update(auth_headers(model.provider, key))
    secrets = (key,) + tuple(model.extra_api_keys)
    started = time.perf_counter()
    try:
        if session is None:
            with new_session() as own:
                response = _get(own, url, headers, timeout, model)
        else:
            response = _get(session, url, headers, timeout, model)
    except requests.RequestException as error:
        latency = (time.perf_counter() - started) * 1000
        phrase = _redact(describe_transport_failure(error, timeout, model.host), secrets)
        return HealthStatus(False, latency, f"{model.host}: {phrase}")
    except _body.BodyTooLarge as error:
        return HealthStatus(False, (time.perf_counter() - started) * 1000, f"{model.host}: the answer is "
                            f"larger than model.max_response_bytes = {error.limit} bytes")
    except (_body.UnsupportedEncoding, zlib.error) as error:
        return HealthStatus(False, (time.perf_counter() - started) * 1000,
                            f"{model.host}: the answer cannot be read: {error}")
    latency = (time.perf_counter() - started) * 1000
    ok, phrase = _describe_response(response, model.model_name)
    return HealthStatus(ok, latency, f"{model.host}: {_redact(phrase, secrets)}")


def _get(session: requests.Session, url: str, headers: Dict[str, str], timeout: float,
         model: ModelConfig) -> requests.Response:
    """The answer, its body read within ``timeout`` in all (however slowly it drips) and
    within ``model.max_response_bytes``. Raises requests.Timeout when the time ran out,
    and what _body.read_body raises."""
    guard = _guard.Guard(time.monotonic() + timeout, f"{timeout:g} s")
    try:
        with guard:
            response = session.get(url, headers=headers, timeout=(timeout, timeout), stream=True,
                                   verify=model.ca_bundle or True, allow_redirects=False)
            _body.read_body(response, model.max_response_bytes)
    except requests.RequestException:
        if guard.expired is None:
            raise
    finally:
        guard.done()
    if guard.expired is not None:
        raise requests.Timeout(f"no complete answer within {timeout:g} s")
    return response


def _redact(text: str, secrets: Tuple[str, ...]) -> str:
    return redact(text, secrets)


def _describe_response(response: requests.Response, model_name: str) -> Tuple[bool, str]:
    status = response.status_code
    if 200 <= status < 300:
        listed = _listed_models(response)
        note = ""
        if listed is not None and model_name not in listed:
            note = f"; model {model_name!r} is not among the {len(listed)} listed"
        return True, f"ok (HTTP {status}){note}"
    if status in (401, 403):
        return False, f"authentication failed (HTTP {status}): check the API key"
    if status == 404:
        return False, f"not found (HTTP 404) at {response.url}: check base_url (often it ends in /v1)"
    if status == 429:
        return False, "rate limited (HTTP 429): the key works, but the provider asks to slow down"
    if status >= 500:
        return False, f"server error (HTTP {status}): the provider is having trouble"
    if 300 <= status < 400:
        where = response.headers.get("Location", "elsewhere")
        return False, f"redirected (HTTP {status}) to {where}: check base_url"
    return False, f"unexpected answer (HTTP {status})"


def _listed_models(response: requests.Response) -> Optional[Set[Any]]:
    """The model ids of an OpenAI/Anthropic-style listing, or None when it is not one."""
    try:
        data: Any = json.loads(response.content)
    except (ValueError, RecursionError):  # a body nested thousands deep raises the latter
        return None
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return None
    return {item.get("id") for item in items if isinstance(item, dict)}
