"""The ``redis`` limiter backend: one limit for every process on every host that uses
the same ``[llm.rate_limit] redis_url`` and ``key``.

Redis keys per limiter key: ``cowork_llm:<key>:requests`` (pyrate-limiter's
``RedisBucket``, a sorted set checked and filled by one atomic Lua script, counting
entries stamped after the caller's clock read too),
``cowork_llm:<key>:tokens`` (pyrate's ``TokenBucket`` state in a hash, through
``RedisStateStore``, also one Lua script), ``cowork_llm:<key>:pause`` (the wall-clock
millisecond until which nobody may start, expiring by itself), and the shared queue of
the processes' heads (:mod:`._ticket_queue`): ``cowork_llm:<key>:queue`` (a
sorted set, score = ticket from the ``cowork_llm:<key>:tickets`` counter) with one
``cowork_llm:<key>:alive:<member>`` key per ticket, expiring unless refreshed (Redis's
clock, so the heartbeat needs no clock agreement between hosts).

Timestamps come from each host's own clock (pyrate's design): hosts need synchronised
clocks (NTP); a host whose clock runs d ms behind can start d ms early.
"""

import logging
import time
from typing import Any, List, Optional

from pyrate_limiter import RateItem, RedisBucket, StateBucket, TokenBucket
from pyrate_limiter.buckets.redis_bucket import LuaScript
from pyrate_limiter.buckets.redis_state import RedisStateStore

from ...config._checks import mask_url_password, url_secrets
from ...config._sections import RateLimitConfig
from ...errors import ConfigError, LimiterBackendError
from .._rates import admission_rates, token_rates
from ._ticket_queue import QueuedBackend

__all__ = ["RedisBackend", "BACKEND"]

logger = logging.getLogger(__name__)

# A Redis that does not answer within this is treated as down (an error, not a hang).
_SOCKET_TIMEOUT_SECONDS = 5.0

# pyrate's RedisBucket script counts a window's entries up to the item's own timestamp.
# Members read their clocks before the script runs, so a member can run with a timestamp
# older than an entry another member has just added: that entry was not counted and
# both were admitted (measured: two starts 0.2 ms apart with 4 processes). Counting up
# to +inf includes it. Same script otherwise, loaded under its own hash.
_PYRATE_COUNT = "redis.call('ZCOUNT', bucket, window_start, now)"
_PUT_ITEM_LUA = LuaScript.PUT_ITEM.replace(
    _PYRATE_COUNT, "redis.call('ZCOUNT', bucket, window_start, '+inf')")
if _PUT_ITEM_LUA == LuaScript.PUT_ITEM:  # pragma: no cover - a pyrate-limiter upgrade
    raise ImportError("pyrate-limiter's RedisBucket script changed; "
                      "cowork_llm.rate_limiter.backends.redis needs review")

# SET the pause only if it ends later than the one stored; expire it with the pause.
_EXTEND_PAUSE_LUA = """
local until_ms = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 0
"""


# The shared queue's turn, atomically: enqueue the member at the back unless queued, keep
# it alive, drop dead tickets from the front, and say whether it is at the front.
# KEYS: queue, ticket counter; ARGV: member, alive-key prefix, alive ms. The alive keys
# are named from the members (this is a single-instance script, not a cluster one).
_TAKE_TURN_LUA = """
local queue, member, alive = KEYS[1], ARGV[1], ARGV[2]
if not redis.call('ZSCORE', queue, member) then
    redis.call('ZADD', queue, redis.call('INCR', KEYS[2]), member)
end
redis.call('SET', alive .. member, '1', 'PX', ARGV[3])
while true do
    local front = redis.call('ZRANGE', queue, 0, 0)[1]
    if front == member then return 1 end
    if redis.call('EXISTS', alive .. front) == 1 then return 0 end
    redis.call('ZREM', queue, front)
end
"""


class RedisBackend(QueuedBackend):
    """Request rates, token budget and pause in one Redis server shared by hosts.

    Raises ConfigError when the redis package is missing or the URL is malformed,
    LimiterBackendError when Redis cannot be reached (naming the URL, never its
    password).
    """

    def __init__(self, config: RateLimitConfig) -> None:
        try:
            import redis
        except ImportError as error:
            raise ConfigError(
                "llm.rate_limit.backend = 'redis' needs the redis package: "
                "pip install 'cowork-llm[redis]'") from error
        assert config.redis_url is not None  # RateLimitConfig requires it for redis
        self.url = mask_url_password(config.redis_url)
        self._secrets = url_secrets(config.redis_url)
        self.description = f"redis {self.url}"
        self._store_errors = (redis.RedisError,)
        self._noscript = redis.exceptions.NoScriptError
        try:
            self._client = redis.Redis.from_url(
                config.redis_url, socket_timeout=_SOCKET_TIMEOUT_SECONDS,
                socket_connect_timeout=_SOCKET_TIMEOUT_SECONDS)
        except ValueError as error:
            raise ConfigError(f"llm.rate_limit.redis_url {self.url!r} is not a Redis URL: "
                              f"{self._scrub(str(error))}") from None
        prefix = f"cowork_llm:{config.key}:"
        self._pause_key = prefix + "pause"
        self._queue_keys = [prefix + "queue", prefix + "tickets"]
        self._alive_prefix = prefix + "alive:"
        rates, tpm = admission_rates(config), token_rates(config)
        try:
            requests = (RedisBucket(rates, self._client, prefix + "requests",
                                    self._client.script_load(_PUT_ITEM_LUA)) if rates else None)
            self._extend_pause = self._client.register_script(_EXTEND_PAUSE_LUA)
            self._take_turn_script = self._client.register_script(_TAKE_TURN_LUA)
            self._client.ping()
        except self._store_errors as error:
            self._client.close()
            raise self._backend_error(error) from None
        tokens = (StateBucket(tpm, algorithm=TokenBucket(),
                              store=RedisStateStore(self._client, prefix + "tokens")) if tpm else None)
        super().__init__(config, requests, tokens)  # type: ignore[arg-type]

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _backend_error(self, error: BaseException) -> LimiterBackendError:
        return LimiterBackendError(
            f"the shared rate limit in {self.description} (llm.rate_limit.redis_url) failed: "
            f"{type(error).__name__}: {self._scrub(str(error))}. Check that Redis is running "
            "and reachable from this host; requests are not sent without their limit")

    def _put_request(self, item: RateItem) -> bool:
        assert isinstance(self._requests, RedisBucket)
        try:
            return bool(self._requests.put(item))
        except self._noscript:
            # Redis restarted (or SCRIPT FLUSH): load pyrate's script again, once.
            self._requests.script_hash = self._client.script_load(_PUT_ITEM_LUA)
            return bool(self._requests.put(item))

    def _read_pause(self) -> float:
        value: Optional[Any] = self._client.get(self._pause_key)
        return 0.0 if value is None else max(0.0, int(value) / 1000 - time.time())

    def _write_pause(self, seconds: float) -> None:
        until_ms = int((time.time() + seconds) * 1000) + 1
        self._extend_pause(keys=[self._pause_key], args=[until_ms, max(1, int(seconds * 1000) + 1)])

    def _take_turn(self, member: str, alive_ms: int) -> bool:
        return bool(self._take_turn_script(keys=self._queue_keys,
                                           args=[member, self._alive_prefix, alive_ms]))

    def _keep_alive(self, member: str, alive_ms: int) -> None:
        self._client.set(self._alive_prefix + member, "1", px=alive_ms)

    def _leave_queue(self, members: List[str]) -> None:
        with self._client.pipeline(transaction=True) as multi:
            multi.zrem(self._queue_keys[0], *members)
            multi.delete(*(self._alive_prefix + member for member in members))
            multi.execute()

    def close(self) -> None:
        self._withdraw_all()
        try:
            self._client.close()
        except self._store_errors as error:  # pragma: no cover - closing a dead socket
            logger.debug("closing %s: %s", self.description, error)


#: What :func:`cowork_llm.rate_limiter.backends.build_backend` builds for ``backend = "redis"``.
BACKEND = RedisBackend
