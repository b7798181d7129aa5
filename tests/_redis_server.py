"""A real ``redis-server`` for tests: started on a free loopback port in a temp directory,
stopped afterwards.

When the binary is missing the tests skip, saying so, except under CI (the ``CI``
variable set): there they fail, because ``.ci/run`` installs redis-server and the
shared-quota tests must run.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Iterator, Optional

import pytest


def free_port() -> int:
    """A loopback port nobody listens on (just now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_redis_server() -> str:
    """The redis-server path; skips (or, under CI, fails) when there is none."""
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the Redis tests", pytrace=False)
        pytest.skip(reason)
    return binary


@contextlib.contextmanager
def redis_server(password: Optional[str] = None, timeout: float = 10.0) -> Iterator[str]:
    """Run redis-server until the block ends; yields its URL (with the password)."""
    binary = require_redis_server()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="cowork-redis-") as workdir:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir,
                "--save", "", "--appendonly", "no", "--protected-mode", "no"]
        if password:
            args += ["--requirepass", password]
        log = open(os.path.join(workdir, "redis.log"), "wb")
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_listening(port, process, timeout, workdir)
            auth = f":{password}@" if password else ""
            yield f"redis://{auth}127.0.0.1:{port}/0"
        finally:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def _wait_until_listening(port: int, process: "subprocess.Popen[bytes]", timeout: float,
                          workdir: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            with open(os.path.join(workdir, "redis.log"), "rb") as log:
                raise RuntimeError(f"redis-server exited with {process.returncode}: "
                                   f"{log.read().decode(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.02)  # polling a port that is not open yet; nothing to wait on
    raise RuntimeError(f"redis-server did not listen on port {port} within {timeout} s")
