"""Hosts whose clocks disagree share one Redis limit: three processes whose wall clocks
are 0, +300 ms and -300 ms apart (libfaketime, as on three hosts without NTP) send
through one redis-server to one FakeLlmServer; no gap at the server is shorter than the
interval, less the arrival jitter (admission to arrival; a few ms on a quiet machine).

Before Redis's clock was used, 7 of 20 gaps were 0.41 s at a 1 s interval here.

libfaketime quirks (DEPENDENCIES.md): FAKETIME_DONT_FAKE_MONOTONIC=1 so only the wall
clock moves; Python's time.sleep then fails with EINVAL, so the child replaces it with
an Event wait before importing anything.
"""

import os
import shutil
import subprocess
import sys
import time

import pytest
from _redis_server import redis_server

from cowork_llm.testing import FakeLlmServer

pytestmark = pytest.mark.redis

INTERVAL = 1.0
CALLS_EACH = 5
SKEWS = ("+0", "+0.3", "-0.3")
JITTER_ALLOWANCE = 0.03  # admission -> arrival at the server, on a busy 2-core machine

CHILD = """
import sys, threading, time
time.sleep = lambda seconds: threading.Event().wait(seconds)  # EINVAL under libfaketime
print("clock", time.time(), flush=True)
from cowork_llm import create_llm_client

client = create_llm_client()
sys.stdin.readline()  # start together
for i in range(int(sys.argv[1])):
    client.chat([{"role": "user", "content": "skew %s call %d" % (sys.argv[2], i)}])
"""


def require_faketime():
    binary = shutil.which("faketime")
    if binary is None:
        reason = "faketime is not installed (apt-get install faketime)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the clock-skew test", pytrace=False)
        pytest.skip(reason)
    return binary


def test_members_on_skewed_clocks_keep_the_interval_at_the_server():
    faketime = require_faketime()
    with redis_server() as url, FakeLlmServer() as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COWORK_")}
        env.update(server.env(min_interval_seconds=INTERVAL, backend="redis", redis_url=url, key="skew"))
        env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
        children = [subprocess.Popen([faketime, "-f", f"{skew}s", sys.executable, "-c", CHILD,
                                      str(CALLS_EACH), skew], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                    for skew in SKEWS]
        try:
            for skew, child in zip(SKEWS, children, strict=True):
                line = child.stdout.readline().split()
                assert line and line[0] == b"clock", child.stderr.read().decode(errors="replace")[-2000:]
                # The skew is real. (Reading the line late only makes the offset look
                # smaller, so the upper bound is tight and the lower one loose.)
                offset = float(line[1]) - time.time()
                assert float(skew) - 1.0 < offset < float(skew) + 0.05, (skew, offset)
            for child in children:
                child.stdin.write(b"go\n")
                child.stdin.flush()
            for child in children:
                _, stderr = child.communicate(timeout=120)
                assert child.returncode == 0, stderr.decode(errors="replace")[-3000:]
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait(10)
        arrivals = sorted(r.arrival_monotonic for r in server.chat_requests)
    assert len(arrivals) == CALLS_EACH * len(SKEWS)
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert min(gaps) >= INTERVAL - JITTER_ALLOWANCE, sorted(gaps)[:3]
