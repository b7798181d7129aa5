"""Where a rate limit's shared state lives: one module per backend, one factory.

``memory`` (:mod:`.memory`) keeps the state in the process; ``sqlite`` (:mod:`.sqlite`)
in a file shared by the processes of one machine; ``redis`` (:mod:`.redis`) in a Redis
server shared by hosts. :mod:`.base` holds the interface and the bucket logic they
share; ``sqlite`` and ``redis`` also keep the FIFO order across processes with the shared
ticket queue (:mod:`._ticket_queue`).

The backend names are the configuration's own vocabulary
(:data:`cowork_llm.config.LIMITER_BACKENDS`, checked when the config is built): the
module of a backend is named after it and loaded on first use, so ``redis`` is imported
only by a program that uses it.
"""

import importlib

from ...config._sections import LIMITER_BACKENDS, RateLimitConfig
from .base import BucketBackend, LimiterBackend
from .memory import MemoryBackend

__all__ = [
    "BucketBackend",
    "build_backend",
    "LIMITER_BACKENDS",
    "LimiterBackend",
    "MemoryBackend",
]


def build_backend(config: RateLimitConfig) -> LimiterBackend:
    """The backend named by ``config.backend`` (one of :data:`LIMITER_BACKENDS`, which
    the config checks), loaded from the module of that name.

    Raises:
        LimiterBackendError: the shared store cannot be opened or reached.
        ConfigError: the backend's settings are unusable (e.g. a malformed redis_url),
            or its package is missing (``pip install cowork-llm[redis]``).
    """
    module = importlib.import_module(f".{config.backend}", __name__)
    backend: LimiterBackend = module.BACKEND(config)
    return backend
