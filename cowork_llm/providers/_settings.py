"""What every HTTP provider refuses before it sends anything: a ``base_url`` that
already ends in an endpoint path, a key in clear text over the network, a CA bundle
that does not exist. ``cowork-llm init`` runs the same check.
"""

import os

from ..config._sections import ModelConfig
from ..errors import ConfigError, InvalidBaseUrlError
from ._sessions import check_transport

__all__ = ["check_model_settings", "ENDPOINT_SUFFIXES"]


# Endpoint paths the client adds to base_url itself: a base_url that already ends in one
# would be sent to ".../chat/completions/chat/completions" and get a 404.
ENDPOINT_SUFFIXES = ("/chat/completions", "/messages", "/embeddings")


def check_model_settings(config: ModelConfig, section: str) -> None:
    """What every HTTP provider refuses before it sends anything (``cowork-llm init``
    runs the same check, so it never calls valid a setup the client refuses).

    Raises:
        InvalidBaseUrlError: ``base_url`` ends in an endpoint path (``/chat/completions``,
            ``/messages``, ...) that the client adds itself.
        ConfigError: plain ``http://`` to a non-loopback host without
            ``allow_insecure_http``, or a ``ca_bundle`` file that does not exist.
    """
    base = config.base_url.rstrip("/")
    for suffix in ENDPOINT_SUFFIXES:
        if base.lower().endswith(suffix):
            raise InvalidBaseUrlError(
                f"{section}.base_url {config.base_url!r} ends in {suffix}, which the client adds "
                f"itself: drop the suffix (base_url = {base[:-len(suffix)]!r})",
                key=f"{section}.base_url")
    check_transport(config.base_url, config.host, config.allow_insecure_http, key=section)
    if config.ca_bundle is not None and not os.path.exists(config.ca_bundle):
        raise ConfigError(f"{section}.ca_bundle {config.ca_bundle!r} does not exist: "
                          "give the path of a PEM file (or directory) of CA certificates",
                          key=f"{section}.ca_bundle")
