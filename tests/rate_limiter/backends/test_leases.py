"""The leases of ``max_concurrent_scope = "shared"`` as a member keeps them: renewed in
the background three times per lease while held, never after they are given back or the
backend is closed; a failed renewal is a WARNING, and renewal goes on."""

import logging
import threading
import time

from cowork_llm.rate_limiter.backends._leases import LeaseKeeper


class Store:
    """Records each renewal (when, which leases); fails the first ``failures`` ones."""

    def __init__(self, failures=0):
        self.renewals = []
        self.failures = failures
        self.renewed = threading.Event()

    def renew(self, leases):
        self.renewals.append((time.monotonic(), sorted(leases)))
        self.renewed.set()
        if self.failures:
            self.failures -= 1
            raise ConnectionError("store unreachable")


def wait_for_renewals(store, count, timeout=10.0):
    deadline = time.monotonic() + timeout
    while len(store.renewals) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(store.renewals) >= count


def test_held_leases_are_renewed_every_third_of_a_lease_before_they_expire():
    store = Store()
    keeper = LeaseKeeper(store.renew, "sqlite file /x", lease_seconds=0.9)
    held_at = time.monotonic()
    keeper.hold("a")
    keeper.hold("b")
    # A daemon thread, named for thread dumps: it never keeps a program from exiting.
    renewing = [t for t in threading.enumerate() if t.name == "cowork-llm-lease-renewal"]
    assert renewing and all(t.daemon for t in renewing)
    try:
        assert wait_for_renewals(store, 3)
    finally:
        keeper.close()
    times = [held_at] + [when for when, _ in store.renewals[:3]]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # Never more often than a third of a lease (one-sided: a loaded machine only delays)...
    assert min(gaps) >= 0.3 - 0.01, gaps
    # ...and each one before the lease it renews would have expired.
    assert max(gaps) < 0.9, gaps
    assert [leases for _, leases in store.renewals[:3]] == [["a", "b"]] * 3


def test_a_lease_given_back_is_no_longer_renewed_and_cannot_be_given_back_twice():
    store = Store()
    keeper = LeaseKeeper(store.renew, "redis redis://h", lease_seconds=0.3)
    keeper.hold("a")
    keeper.hold("b")
    try:
        assert keeper.drop("a") is True
        assert keeper.drop("a") is False  # released twice: nothing to give back again
        assert keeper.held() == ["b"]
        assert keeper.drop("b") is True
        store.renewals.clear()
        time.sleep(0.35)  # past a renewal's time: nothing held, nothing renewed
        assert store.renewals == []
        keeper.hold("c")  # the renewing thread is still there for the next lease
        assert wait_for_renewals(store, 1)
        assert store.renewals[0][1] == ["c"]
    finally:
        keeper.close()


def test_after_close_nothing_is_renewed():
    store = Store()
    keeper = LeaseKeeper(store.renew, "redis redis://h", lease_seconds=0.3)
    keeper.hold("a")
    assert wait_for_renewals(store, 1)
    keeper.close()
    time.sleep(0.15)  # a renewal under way when close() ran may still finish
    count = len(store.renewals)
    time.sleep(0.4)
    assert len(store.renewals) == count


def test_a_failed_renewal_is_a_warning_and_renewal_goes_on(caplog):
    store = Store(failures=1)
    keeper = LeaseKeeper(store.renew, "sqlite file /tmp/l.sqlite", lease_seconds=0.6)
    caplog.set_level(logging.WARNING, logger="cowork_llm.rate_limiter.backends._leases")
    keeper.hold("a")
    keeper.hold("b")
    try:
        assert wait_for_renewals(store, 2)  # the thread survived the failure
    finally:
        keeper.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage() == (
        "could not renew 2 concurrency lease(s) in sqlite file /tmp/l.sqlite: store "
        "unreachable; they expire in 1 s unless a renewal succeeds")
