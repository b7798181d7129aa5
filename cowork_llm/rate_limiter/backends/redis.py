"""The ``redis`` limiter backend: one limit for every process on every host that uses
the same ``[llm.rate_limit] redis_url`` and ``key``.

**One clock.** Every timestamp the group compares (the request log, the token bucket,
the pause, the queue's heartbeats, the leases) is read from Redis's ``TIME`` inside the
atomic scripts (:mod:`._redis_scripts`), never from a member's clock: members on hosts
whose clocks disagree share one timeline. A server that forbids ``TIME`` followed by a
write in a script (some managed services replicate scripts verbatim) is detected when
the backend starts: it then passes each host's wall clock instead, with a WARNING that
hosts need synchronised clocks (NTP) again.

**One round trip per ask.** One script decides everything: lost state, queue, pause,
leases, rates, tokens, and on admission records the start, spends the tokens, takes
the lease, leaves the queue and wakes the next member.

**Keys** (one hash tag per limiter, so every script runs on one Redis Cluster node):
``cowork_llm:{KEY}:requests`` (sorted set of starts), ``:tokens`` (hash), ``:pause``,
``:queue`` + ``:tickets`` + ``:alive`` (the shared ticket queue, :mod:`._ticket_queue`),
``:generation`` (must exist: when it is gone, the state was lost), ``:leases`` (the
shared concurrency cap, :mod:`._leases`), ``:wake:<member>`` (a list the member blocks
on while others are ahead of it).

**Cluster**: ``redis+cluster://`` (or ``rediss+cluster://``) in ``redis_url``; see
:func:`_client_for`.
"""

import logging
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, TypeVar

from ...config._checks import mask_url_password, url_secrets
from ...config._sections import RateLimitConfig
from ...errors import ConfigError, LimiterBackendError
from .._rates import (
    admission_rates,
    lost_state_pause_seconds,
    padded_window_ms,
    request_rates,
    reservation_lead_seconds,
    token_rates,
)
from . import _redis_scripts as scripts
from ._leases import LeaseKeeper
from ._provider_store import REDIS_VIEW_TTL_MS, redis_update, redis_view_scripts
from ._redis_call import ScriptCall
from ._ticket_queue import QueuedBackend

__all__ = ["RedisBackend", "BACKEND", "CLUSTER_SCHEMES"]

T = TypeVar("T")

logger = logging.getLogger(__name__)

# A Redis that does not answer within this is treated as down (an error, not a hang).
_SOCKET_TIMEOUT_SECONDS = 5.0
# The longest a member blocks on its wake-up list before asking again anyway (a lost
# wake-up, a member ahead that died): bounds the cost of a lost wake-up.
AWAIT_FALLBACK_SECONDS = 0.5
#: URL schemes that mean "a Redis Cluster": the rest of the URL names any one node.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

_ADMITTED, _WAIT, _BEHIND, _LEASES_OUT, _EXPIRED = 0, 1, 2, 3, 4
# How long the view an admission read may stand in for a fresh read (the charge follows
# within microseconds; past this, something held the thread and it reads again).
_VIEW_READ_FRESH_SECONDS = 0.05


def _client_for(url: str) -> Any:
    """A redis-py client for ``url``: ``RedisCluster`` for ``redis+cluster://`` and
    ``rediss+cluster://`` (the scheme says it, so one setting, and one
    COWORK_LLM_RATE_LIMIT_REDIS_URL, names the whole store; a separate flag could
    disagree with the URL it goes with), ``Redis`` otherwise. Raises ValueError for a
    URL redis-py rejects."""
    import redis
    from redis.cluster import RedisCluster

    scheme, sep, rest = url.partition("://")
    timeouts = {"socket_timeout": _SOCKET_TIMEOUT_SECONDS,
                "socket_connect_timeout": _SOCKET_TIMEOUT_SECONDS}
    if sep and scheme.lower() in CLUSTER_SCHEMES:
        return RedisCluster.from_url(f"{CLUSTER_SCHEMES[scheme.lower()]}://{rest}", **timeouts)
    return redis.Redis.from_url(url, **timeouts)


class RedisBackend(QueuedBackend):
    """Request rates, token budget, pause, queue and leases in one Redis (or one node of a
    Redis Cluster) shared by hosts, on Redis's clock.

    Raises ConfigError when the redis package is missing or the URL is malformed,
    LimiterBackendError when Redis cannot be reached (naming the URL, never a credential).
    """

    #: The bounded fallback of :meth:`await_turn` (tests shorten it).
    await_fallback_seconds = AWAIT_FALLBACK_SECONDS

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
        try:
            self._client = _client_for(config.redis_url)
        except (ValueError, redis.RedisError) as error:
            raise ConfigError(f"llm.rate_limit.redis_url {self.url!r} is not a usable Redis URL: "
                              f"{self._scrub(str(error))}") from None
        tag = f"cowork_llm:{{{config.key}}}:"
        self._keys = {name: tag + name for name in (
            "requests", "tokens", "pause", "queue", "tickets", "alive", "generation", "leases",
            "provider_view")}
        self._wake_prefix = tag + "wake:"
        rates = admission_rates(config)
        # The scripts count in fractional ms: pad the windows exactly, not rounded up to
        # whole ms (at 10 ms, 10.1 ms instead of 11).
        self._rates_arg = ",".join(f"{r.limit}:{padded_window_ms(r.interval)!r}"
                                   for r in request_rates(config))
        tpm = token_rates(config)
        self._tokens_args = [tpm[0].limit, tpm[0].interval] if tpm else [0, 1]
        self._lost_pause_ms = lost_state_pause_seconds(config) * 1000
        self._lead = reservation_lead_seconds(config)
        self._generation = ""  # the generation this member last saw ("" before its first ask)
        self._host_clock = False
        self._last: Dict[int, int] = {}  # thread -> the code of its last answer
        self._last_lock = threading.Lock()
        # thread -> (the provider view's text, Redis's clock in s, monotonic) read by its
        # admission: the view's charge right after starts from it (see update_provider_view).
        self._view_read: Dict[int, Tuple[str, float, float]] = {}
        self._asking = threading.local()  # the demand of this thread's ask
        self._charged: Dict[int, Dict[str, float]] = {}  # thread -> the marks its ask charged
        self.leases = LeaseKeeper(self._renew, self.description)
        try:
            # The ask, every admission: on a connection of its own (see _redis_call).
            self._acquire = ScriptCall(self._client, self._client.register_script(scripts.ACQUIRE))
            # The provider view's read and compare-and-set: the charge follows every
            # admission when adaptive, so they take the same path.
            read, cas = redis_view_scripts(self._client)
            self._view_scripts = (ScriptCall(self._client, read), ScriptCall(self._client, cas))
            self._release = self._client.register_script(scripts.RELEASE)
            self._renew_script = self._client.register_script(scripts.RENEW)
            self._leave = self._client.register_script(scripts.LEAVE)
            self._pause = self._client.register_script(scripts.PAUSE)
            self._check_clock()
        except self._store_errors as error:
            self._client.close()
            raise self._backend_error(error) from None
        super().__init__(config, None, None)
        self._rates = rates
        self._pending_lease: Dict[int, str] = {}  # thread -> the lease its admission took

    charges_view_with_ask = True

    def try_acquire(self, weight: int = 1, tokens: int = 0, lead: float = 0.0,
                    demand: Optional[Mapping[str, float]] = None) -> float:
        self._asking.demand = demand
        try:
            return super().try_acquire(weight, tokens, lead)
        finally:
            self._asking.demand = None

    def take_charge(self) -> Optional[Dict[str, float]]:
        return self._charged.pop(threading.get_ident(), None)

    def _counts_tokens(self) -> bool:
        return bool(self._tokens_args[0])

    def _check_clock(self) -> None:
        try:
            sent = time.monotonic()
            seconds, micros = self._client.eval(scripts.CLOCK_CHECK, 1,
                                                self._keys["generation"] + ":clock-check")
            self._offset_ms = (int(seconds) * 1000 + int(micros) / 1000
                               - (sent + time.monotonic()) / 2 * 1000)
        except self._store_errors as error:
            text = str(error)
            if "TIME" not in text.upper() and "non deterministic" not in text.lower():
                raise
            self._host_clock = True
            logger.warning("%s does not allow TIME in scripts (%s): the shared limit uses "
                           "each host's wall clock instead; hosts need synchronised clocks "
                           "(NTP), a host running d ms behind can start d ms early",
                           self.description, self._scrub(text))

    def clock(self) -> float:
        if self._host_clock:
            return time.time()
        return self._store_now_ms() / 1000

    def _now_arg(self) -> str:
        return repr(time.time() * 1000) if self._host_clock else ""

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _backend_error(self, error: BaseException) -> LimiterBackendError:
        return LimiterBackendError(
            f"the shared rate limit in {self.description} (llm.rate_limit.redis_url) failed: "
            f"{type(error).__name__}: {self._scrub(str(error))}. Check that Redis is running "
            "and reachable from this host; requests are not sent without their limit")

    # --- asking ------------------------------------------------------------------------

    def _try_acquire_guarded(self, weight: int, tokens: int, lead: float) -> float:
        member = self._my_member()
        ghosts = self._take_ghosts()
        try:
            return self._ask(member, ghosts, weight, tokens, lead)
        except self._store_errors:
            with self._members_lock:
                self._ghosts.extend(ghosts)  # removed by the next good ask instead
            raise

    def _ask(self, member: str, ghosts: List[str], weight: int, tokens: int, lead: float) -> float:
        lease = LeaseKeeper.new_id() if self._shared_cap else ""
        alive_ms = max(1, round(self.stale_ticket_seconds * 1000))
        # An ask that runs after its member gave up (Redis stalled past the socket timeout
        # and resumed) must do nothing: it would enqueue a ghost ticket. Its deadline is
        # on Redis's clock, estimated from the last answer.
        valid_until = self._store_now_ms() + _SOCKET_TIMEOUT_SECONDS * 1000 if self._offset_ms else 0
        sent = time.monotonic()
        demand = getattr(self._asking, "demand", None)
        code, wait_ms, now_ms, generation, lost, view, marks = self._acquire(
            keys=list(self._keys.values()),
            args=[self._now_arg(), member, self._generation, repr(valid_until), alive_ms, weight,
                  tokens, self._rates_arg, *self._tokens_args,
                  repr(self._lost_pause_ms), self.config.max_concurrent if self._shared_cap else 0,
                  round(self.leases.lease_seconds * 1000), lease, self._wake_prefix,
                  ",".join(ghosts), 1, repr(lead * 1000),
                  ",".join(f"{name}:{amount!r}" for name, amount in demand.items()) if demand else "",
                  REDIS_VIEW_TTL_MS])
        received = time.monotonic()
        self._offset_ms = float(now_ms) - (sent + received) / 2 * 1000
        generation = generation.decode() if isinstance(generation, bytes) else generation
        if lost and self._generation:
            logger.warning("the shared state of rate limiter %r in %s was lost (Redis flushed "
                           "or restarted without persistence); holding this group's starts "
                           "for one full interval (%.3f s)", self._name, self.description,
                           self._lost_pause_ms / 1000)
        self._generation = generation
        if int(code) in (_BEHIND, _LEASES_OUT):  # what await_turn blocks for
            with self._last_lock:
                self._last[threading.get_ident()] = int(code)
        if int(code) == _ADMITTED:
            with self._members_lock:
                self._members.pop(threading.get_ident(), None)
            marks = marks.decode() if isinstance(marks, bytes) else marks
            if marks:  # the script charged the view (nothing learned in it yet)
                self._charged[threading.get_ident()] = {
                    name: float(total) for name, total in (pair.split(":") for pair in marks.split(","))}
            elif demand:
                view = view.decode() if isinstance(view, bytes) else view
                self._view_read[threading.get_ident()] = (view, float(now_ms) / 1000, received)
            if lease:
                self._pending_lease[threading.get_ident()] = lease
                self.leases.hold(lease)
            if float(wait_ms) > 0:  # a reservation: the start is recorded at that instant
                return min(0.0, -self._until(float(now_ms) + float(wait_ms)))
            return 0.0
        if int(code) == _EXPIRED:  # cannot happen to an ask we are still waiting for
            return self.await_fallback_seconds
        if int(code) != _WAIT:
            return self.await_fallback_seconds
        # Counted from when the script ran, not from when its answer arrived.
        return max(self._until(float(now_ms) + float(wait_ms)), 0.0005)

    def _until(self, store_ms: float) -> float:
        """Seconds from now until ``store_ms``, an instant on the group's clock. (Asking a
        one-way trip early was tried: no better utilisation, more round trips.)"""
        return (store_ms - self._offset_ms) / 1000 - time.monotonic()

    _offset_ms = 0.0  # Redis's clock minus time.monotonic(), in ms (0 until the first answer)

    def _store_now_ms(self) -> float:
        return time.monotonic() * 1000 + self._offset_ms

    def await_turn(self, seconds: float) -> bool:
        """Block until a member ahead wakes this one (it was admitted, gave up, or gave
        a lease back) or ``seconds`` (at most :attr:`await_fallback_seconds`) pass;
        False at once when this thread's last answer was a plain wait (the gate sleeps
        for it). Store failures end the wait early, silently: the next ask reports them."""
        with self._last_lock:
            code = self._last.pop(threading.get_ident(), None)
        if code not in (_BEHIND, _LEASES_OUT):
            return False
        member = self._my_member()
        timeout = min(max(seconds, 0.01), self.await_fallback_seconds)
        try:
            woken = self._client.blpop([self._wake_prefix + member], timeout=timeout)
        except self._store_errors as error:
            logger.debug("waiting for a wake-up from %s: %s", self.description, self._scrub(str(error)))
            return True
        if woken is not None:
            # The member admitted before us says when our turn can come: sleep until the
            # reservation lead before then, and ask for it.
            next_at = float(woken[1])  # when our turn can come, on the group's clock; 0: now
            if next_at > 0:
                wait = self._until(next_at) - self._lead
                if wait > 0:
                    threading.Event().wait(min(wait, timeout))
        return True

    # --- leases ------------------------------------------------------------------------

    @property
    def _shared_cap(self) -> bool:
        return self.config.max_concurrent_scope == "shared"

    def take_lease(self) -> Optional[str]:
        return self._pending_lease.pop(threading.get_ident(), None)

    def release_lease(self, lease: str) -> None:
        if not self.leases.drop(lease):
            return
        try:
            self._release(keys=[self._keys["leases"], self._keys["queue"]],
                          args=[self._now_arg(), self._wake_prefix,
                                max(1, round(self.stale_ticket_seconds * 1000)), lease])
        except self._store_errors as error:
            logger.warning("could not give back a concurrency lease in %s: %s; it expires "
                           "by itself within %.0f s", self.description,
                           self._scrub(str(error)), self.leases.lease_seconds)

    def _renew(self, leases: List[str]) -> None:
        self._renew_script(keys=[self._keys["leases"]],
                           args=[self._now_arg(), round(self.leases.lease_seconds * 1000), *leases])

    # --- pause and queue ---------------------------------------------------------------

    def _read_pause(self) -> float:
        return float(self._pause(keys=[self._keys["pause"]], args=[self._now_arg(), 0, "1"])) / 1000

    def _write_pause(self, seconds: float) -> None:
        self._pause(keys=[self._keys["pause"]], args=[self._now_arg(), repr(seconds * 1000), "0"])

    shares_provider_view = True

    def update_provider_view(self, update: Callable[[Dict[str, Any], float], T], *,
                             read_only: bool = False) -> T:
        """The provider view next to the pause key (same hash tag, so the same slot), in
        an optimistic transaction, on Redis's clock (the hosts' when TIME is refused).

        An update right after this thread's admission (the view's charge) starts from the
        view the admitting script read: one round trip instead of two. The
        compare-and-set still guards it: had another member written since, it runs
        again on a fresh read."""
        read = self._view_read.pop(threading.get_ident(), None)
        first = None
        if read is not None and not read_only and time.monotonic() - read[2] < _VIEW_READ_FRESH_SECONDS:
            first = (read[0], read[1] + time.monotonic() - read[2])  # its clock, brought to now
        try:
            return redis_update(self._client, self._keys["provider_view"], update,
                                read_only=read_only, redis_clock=not self._host_clock, first=first,
                                scripts=self._view_scripts)
        except self._store_errors as error:
            raise self._backend_error(error) from error

    def _take_turn(self, member: str, alive_ms: int) -> bool:  # pragma: no cover - in ACQUIRE
        raise NotImplementedError

    def _keep_alive(self, member: str, alive_ms: int) -> None:  # pragma: no cover - in ACQUIRE
        raise NotImplementedError

    def _leave_queue(self, members: List[str]) -> None:
        self._leave(keys=[self._keys["queue"], self._keys["alive"]],
                    args=[self._now_arg(), self._wake_prefix,
                          max(1, round(self.stale_ticket_seconds * 1000)), *members])

    def close(self) -> None:
        self.leases.close()
        self._withdraw_all()
        try:
            for call in (self._acquire, *self._view_scripts):
                getattr(call, "close", lambda: None)()  # a test may have wrapped one
            self._client.close()
        except self._store_errors as error:  # pragma: no cover - closing a dead socket
            logger.debug("closing %s: %s", self.description, error)


#: What :func:`cowork_llm.rate_limiter.backends.build_backend` builds for ``backend = "redis"``.
BACKEND = RedisBackend
