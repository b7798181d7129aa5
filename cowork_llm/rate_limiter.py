"""RateLimiter, the process-wide registry, RateLimitedLlm. (stub)"""


class RateLimiter:
    pass


class RateLimitedLlm:
    pass


def init_global_rate_limiter(config=None):  # type: ignore[no-untyped-def]
    raise NotImplementedError


def get_global_rate_limiter(key="default"):  # type: ignore[no-untyped-def]
    raise NotImplementedError
