"""A real ``redis-server`` for tests: started on a free loopback port in a temp directory,
stopped afterwards.

When the binary is missing the tests skip, saying so, except under CI (the ``CI``
variable set): there they fail, because ``.ci/run`` installs redis-server and the
shared-quota tests must run.
"""

import contextlib
import os
import random
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


@contextlib.contextmanager
def redis_cluster(nodes: int = 3, timeout: float = 20.0) -> Iterator[str]:
    """Run a real Redis Cluster of ``nodes`` masters (``redis-server --cluster-enabled
    yes``, joined with ``redis-cli --cluster create``) until the block ends; yields a
    ``redis+cluster://`` URL naming its first node."""
    binary = require_redis_server()
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.fail("redis-cli is missing (it comes with redis-server: apt-get install "
                    "redis-tools)", pytrace=False)
    ports = _cluster_ports(nodes)
    with tempfile.TemporaryDirectory(prefix="cowork-redis-cluster-") as workdir, \
            contextlib.ExitStack() as stack:
        for port in ports:
            node_dir = os.path.join(workdir, str(port))
            os.mkdir(node_dir)
            log = stack.enter_context(open(os.path.join(node_dir, "redis.log"), "wb"))
            process = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", node_dir,
                 "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                 "--save", "", "--appendonly", "no", "--protected-mode", "no"],
                stdout=log, stderr=subprocess.STDOUT)
            stack.callback(_stop, process, timeout)
            _wait_until_listening(port, process, timeout, node_dir)
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=timeout)
        _wait_until_cluster_ok(cli, ports, timeout)
        yield f"redis+cluster://127.0.0.1:{ports[0]}/0"


def _cluster_ports(count: int) -> "list[int]":
    """Ports free together with their cluster bus port (port + 10000, which must exist:
    an ephemeral port above 55535 has none and redis-server exits)."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20000, 40000)
        if port in ports:
            continue
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        ports.append(port)
    return ports


def _stop(process: "subprocess.Popen[bytes]", timeout: float) -> None:
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_until_cluster_ok(cli: str, ports: "list[int]", timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [subprocess.run([cli, "-p", str(p), "cluster", "info"], capture_output=True,
                                 text=True, timeout=timeout).stdout for p in ports]
        if all("cluster_state:ok" in state for state in states):
            return
        time.sleep(0.05)  # the nodes agree on the slots within a second or so
    raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
