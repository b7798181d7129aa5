"""The public API is exactly what the façades list: ``__all__`` is sorted, every name in
it exists, and every public name a façade takes from its own package is listed (as httpx's
``tests/test_exported_members.py`` does)."""

import importlib

import pytest

FACADES = ["cowork_llm", "cowork_llm.testing", "cowork_llm.rate_limiter", "cowork_llm.config",
           "cowork_llm.client", "cowork_llm.batch", "cowork_llm.cache", "cowork_llm.errors",
           "cowork_llm.rate_limiter.backends", "cowork_llm.tools", "cowork_llm.telemetry",
           "cowork_llm.request"]


@pytest.mark.parametrize("name", FACADES)
def test_all_lists_exactly_the_public_names(name):
    module = importlib.import_module(name)
    exported = set(module.__all__)
    own = name if name != "cowork_llm.errors" else "cowork_llm"
    public = {member for member, value in vars(module).items() if not member.startswith("_")
              and not isinstance(value, type(module))  # submodules aside
              and (getattr(value, "__module__", None) or "").startswith(own)}
    if name != "cowork_llm.errors":  # errors.py lists its classes in the order of the tree
        assert module.__all__ == sorted(module.__all__, key=str.casefold)
    assert len(module.__all__) == len(exported), "a name is listed twice"
    assert public - exported == set(), "public but not in __all__"
    assert {n for n in exported if not hasattr(module, n)} == set(), "listed but missing"


def test_the_names_users_import_keep_working():
    import cowork_llm
    from cowork_llm.batch import run_batch  # noqa: F401
    from cowork_llm.rate_limiter import (  # noqa: F401
        RateLimiter,
        cancel_on,
        get_global_rate_limiter,
        init_global_rate_limiter,
    )
    from cowork_llm.testing import FakeLlmServer, MockLlm  # noqa: F401
    from cowork_llm.testing.llamacpp import LlamaCppServer  # noqa: F401

    for name in ("create_llm_client", "load_config", "Llm", "ChatResult", "RateLimitedLlm",
                 "FallbackLlm", "HealthStatus", "LlmError", "ConfigError", "__version__"):
        assert name in cowork_llm.__all__


def test_every_llm_error_lives_in_errors():
    import cowork_llm
    from cowork_llm import errors

    for name in cowork_llm.__all__:
        value = getattr(cowork_llm, name)
        if isinstance(value, type) and issubclass(value, errors.LlmError):
            assert value.__module__ == "cowork_llm.errors", name


def test_the_tree_drawn_in_errors_docstring_is_the_real_one():
    import re

    from cowork_llm import errors

    drawn = set(re.findall(r"\b([A-Z]\w+(?:Error|Cancelled))\b", errors.__doc__))
    real = {name for name, value in vars(errors).items()
            if isinstance(value, type) and issubclass(value, errors.LlmError)}
    assert drawn - {"ValueError"} == real
