"""Transport safety: TLS verified by default (``ca_bundle`` for a private CA), no key in
clear text to a non-loopback host unless ``allow_insecure_http``, and no key forwarded on
a redirect to another host.

The HTTPS server is a small http.server behind a self-signed certificate made with the
``cryptography`` package for the names ``localhost`` and ``127.0.0.1``. For redirects,
"another host" is another host *name*: the redirecting server is reached as 127.0.0.1,
the target as ``localhost`` — the same machine, but a different origin to any client,
which is the comparison requests makes. A same-origin redirect is the control: there the
key must still arrive, which proves the redirect is followed and the header observable.
"""

import datetime
import ipaddress
import json
import os
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from cowork_llm import create_llm_client
from cowork_llm.config import LlmConfig, ModelConfig, RateLimitConfig, RetryConfig
from cowork_llm.errors import ApiConnectionError, ConfigError, UnknownHostError, UntrustedCertificateError

from ._helpers import SECRET_KEY

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

COMPLETION = {"id": "chatcmpl-t", "object": "chat.completion", "created": 0, "model": "m",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "over tls"},
                           "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
ANTHROPIC_MESSAGE = {"id": "msg_t", "type": "message", "role": "assistant", "model": "m",
                     "content": [{"type": "text", "text": "over tls"}], "stop_reason": "end_turn",
                     "usage": {"input_tokens": 1, "output_tokens": 2}}


def make_certificate(directory: Any) -> Tuple[str, str]:
    """A self-signed certificate for localhost and 127.0.0.1; (cert path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


class TinyServer:
    """An HTTP(S) server that records each request's credential headers and either
    answers a chat request or redirects it (``redirect_to``: a URL prefix)."""

    def __init__(self, host: str = "127.0.0.1", tls: Optional[Tuple[str, str]] = None,
                 redirect_to: Optional[str] = None, status: int = 307) -> None:
        self.seen: List[Dict[str, Optional[str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.seen.append({"path": self.path, "authorization": self.headers.get("Authorization"),
                                   "x-api-key": self.headers.get("x-api-key")})
                if owner.redirect_to and not self.path.startswith("/same/"):
                    self.send_response(owner.status)
                    self.send_header("Location", owner.redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps(ANTHROPIC_MESSAGE if self.path.endswith("/messages") else COMPLETION)
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.redirect_to = redirect_to
        self.status = status
        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def __enter__(self) -> "TinyServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def config_for(base_url: str, max_attempts: int = 1, initial_wait_seconds: float = 1.0,
               **model: Any) -> LlmConfig:
    return LlmConfig(
        model=ModelConfig(base_url=base_url, api_key=SECRET_KEY, model_name="m", timeout_seconds=5.0,
                          **model),
        rate_limit=RateLimitConfig(min_interval_seconds=0.0, key=f"transport-{base_url}"),
        retry=RetryConfig(max_attempts=max_attempts, initial_wait_seconds=initial_wait_seconds),
    )


@pytest.fixture
def https_server(tmp_path) -> Iterator[Tuple[TinyServer, str]]:
    cert, key = make_certificate(tmp_path)
    with TinyServer(tls=(cert, key)) as server:
        yield server, cert


# --- TLS ----------------------------------------------------------------------------------


def test_tls_is_verified_by_default_and_a_self_signed_certificate_is_refused(https_server):
    server, _ = https_server
    llm = create_llm_client(config_for(f"https://localhost:{server.port}/v1", max_attempts=5))
    with pytest.raises(UntrustedCertificateError) as caught:
        llm.generate_content("hi")
    message = str(caught.value)
    assert "the certificate of localhost is not trusted" in message and "self-signed" in message
    assert f"https://localhost:{server.port}" in message  # it says where
    assert "model.ca_bundle" in message  # and what to do
    assert caught.value.attempts == 1  # not retried: the next attempt meets the same certificate
    assert server.seen == []  # the handshake failed: no request, no key sent


@pytest.mark.parametrize("errno, retried", [(socket.EAI_NONAME, False), (socket.EAI_AGAIN, True)])
def test_a_name_that_does_not_exist_is_not_retried_but_a_dns_hiccup_is(monkeypatch, errno, retried):
    real = socket.getaddrinfo
    asked = []

    def getaddrinfo(host, *args, **kwargs):
        if host == "no-such-host.invalid":
            asked.append(host)
            raise socket.gaierror(errno, os.strerror(errno) if errno > 0 else "DNS failure")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    llm = create_llm_client(config_for("https://no-such-host.invalid/v1", max_attempts=3,
                                       initial_wait_seconds=0.01))
    with pytest.raises(ApiConnectionError) as caught:
        llm.generate_content("hi")
    if retried:
        assert type(caught.value) is ApiConnectionError and len(asked) == 3
    else:
        assert isinstance(caught.value, UnknownHostError) and len(asked) == 1
        assert "no-such-host.invalid does not resolve" in str(caught.value)
        assert "check base_url" in str(caught.value)


def test_ca_bundle_trusts_a_private_ca_and_verification_stays_on(https_server):
    server, cert = https_server
    for host in ("localhost", "127.0.0.1"):  # both names are in the certificate
        llm = create_llm_client(config_for(f"https://{host}:{server.port}/v1", ca_bundle=cert))
        assert llm.generate_content("hi") == "over tls"
    assert [s["authorization"] for s in server.seen] == [f"Bearer {SECRET_KEY}"] * 2


def test_ca_bundle_does_not_turn_off_hostname_checks(https_server, tmp_path):
    # A certificate the bundle trusts, but for other names: still refused.
    server, cert = https_server
    other = tmp_path / "other"
    other.mkdir()
    other_cert, other_key = make_certificate(other)
    with TinyServer(tls=(other_cert, other_key)) as impostor:
        llm = create_llm_client(config_for(f"https://localhost:{impostor.port}/v1", ca_bundle=cert))
        with pytest.raises(ApiConnectionError):
            llm.generate_content("hi")
        assert impostor.seen == []


# --- plain http ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://10.1.2.3/v1", "http://api.example.com/v1", "http://192.168.0.7:8080/v1"])
def test_no_key_over_plain_http_to_a_non_loopback_host(url):
    with pytest.raises(ConfigError) as caught:
        create_llm_client(config_for(url))
    assert "allow_insecure_http" in str(caught.value)
    assert SECRET_KEY not in str(caught.value)
    # Allowed when the user says the network is trusted (nothing is sent here).
    assert create_llm_client(config_for(url, allow_insecure_http=True)) is not None


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_plain_http_to_loopback_is_allowed(host):
    with TinyServer() as server:
        llm = create_llm_client(config_for(f"http://{host}:{server.port}/v1"))
        assert llm.generate_content("hi") == "over tls"


# --- redirects -----------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_host_does_not_carry_the_key(provider, status):
    with TinyServer(host="127.0.0.1") as target:
        to = f"http://localhost:{target.port}"
        with TinyServer(host="127.0.0.1", redirect_to=to, status=status) as redirector:
            llm = create_llm_client(config_for(f"http://127.0.0.1:{redirector.port}/v1", provider=provider))
            try:
                llm.generate_content("hi")
            except Exception:  # noqa: BLE001 - a 301/302/303 turns the POST into a GET: may fail
                pass
            # The first server got the key (it is the configured host)...
            first = redirector.seen[0]
            assert first["authorization"] or first["x-api-key"]
        # ...the other host did get the redirected request (a 307/308 keeps the POST)...
        if status in (307, 308):
            assert target.seen, "the redirect was not followed: the check below would be empty"
        # ...but never the key, in any header.
        for request in target.seen:
            assert request["authorization"] is None, f"{status}: Authorization forwarded"
            assert request["x-api-key"] is None, f"{status}: x-api-key forwarded"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_control_a_same_origin_redirect_keeps_the_key(provider):
    # Shows the redirect is followed and the header observable: the test above is not
    # passing because nothing was ever forwarded anywhere.
    with TinyServer(host="127.0.0.1", status=307) as server:
        server.redirect_to = f"http://127.0.0.1:{server.port}/same"
        llm = create_llm_client(config_for(f"http://127.0.0.1:{server.port}/v1", provider=provider))
        assert llm.generate_content("hi") == "over tls"
    paths = [s["path"] for s in server.seen]
    assert paths[1].startswith("/same/")
    sent = server.seen[1]["authorization"] or server.seen[1]["x-api-key"]
    assert sent is not None and SECRET_KEY in sent
