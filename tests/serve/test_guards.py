"""The guards on a real socket: API key and body limit before/while the body arrives, JSON only, Host check."""

from __future__ import annotations

import json
import select

import httpx
import pytest

from .conftest import connect, fill_prompts, metric, read_to_close, serving, status_of

BODY_BYTES = "softprompt_request_body_bytes_total"
CHUNKED_HEAD = (
    "POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    "Transfer-Encoding: chunked\r\n{auth}\r\n"
)


@pytest.fixture(scope="module")
def server(base, tmp_path_factory):
    folder = fill_prompts(base, tmp_path_factory.mktemp("prompts"))
    with serving(base, folder, api_key="s3cret", max_body_bytes=64 * 1024) as srv:
        yield srv


def test_a_chunked_body_without_a_key_is_refused_before_any_of_it_is_read(server):
    before = metric(server, BODY_BYTES)
    with connect(server) as sock:
        sock.sendall(CHUNKED_HEAD.format(auth="").encode())  # the head only: the 600 MB would follow
        reply = read_to_close(sock)  # the server answers and closes without waiting for the body
    assert status_of(reply) == 401 and b"missing API key" in reply
    assert metric(server, BODY_BYTES) == before  # not one byte of body was read


def test_a_chunked_body_with_a_key_gets_413_as_soon_as_it_passes_the_cap(server):
    before = metric(server, BODY_BYTES)
    chunk = b"%x\r\n%s\r\n" % (16 * 1024, b"[" * 16 * 1024)
    sent, reply = 0, b""
    with connect(server) as sock:
        sock.sendall(CHUNKED_HEAD.format(auth="Authorization: Bearer s3cret\r\n").encode())
        # Keep streaming, as an attacker would, up to 64 MB: the answer must come long before.
        while sent < 4096 and not reply:
            if select.select([sock], [], [], 0)[0]:
                reply = read_to_close(sock)
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                reply = read_to_close(sock)
                break
            sent += 1
    assert status_of(reply) == 413 and b"larger than 65536 bytes" in reply
    assert sent < 4096  # it did not wait for the end of the body
    read = metric(server, BODY_BYTES) - before
    assert read <= 64 * 1024  # what reached the app stayed under the cap


def test_declared_oversized_body_is_refused_from_its_headers(server):
    with connect(server) as sock:
        head = (
            "POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Authorization: Bearer s3cret\r\nContent-Length: 600000000\r\n\r\n"
        )
        sock.sendall(head.encode())
        assert status_of(read_to_close(sock)) == 413


@pytest.mark.parametrize(
    "content_type", ["text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded", None]
)
def test_a_post_that_is_not_json_gets_415_even_with_a_json_body(server, content_type):
    # What a web page may send cross-site without a preflight: a "simple" request with a JSON-looking body.
    headers = {"Authorization": "Bearer s3cret"}
    if content_type:
        headers["Content-Type"] = content_type
    body = json.dumps({"prompt": "sent", "inputs": ["x"]})
    reply = httpx.post(f"{server.url}/v1/classify", content=body, headers=headers)
    assert reply.status_code == 415, reply.text
    assert "Content-Type: application/json" in reply.json()["error"]["message"]
    key = {"Authorization": "Bearer s3cret"}
    ok = httpx.post(f"{server.url}/v1/classify", json={"prompt": "sent", "inputs": ["x"]}, headers=key)
    assert ok.status_code == 200


def test_public_endpoints_need_no_key_and_everything_else_does(server):
    for path in ("/health", "/metrics", "/openapi.json", "/docs"):
        assert httpx.get(f"{server.url}{path}").status_code == 200, path
    for path in ("/v1/prompts", "/v1/models", "/v1/prompts/sent", "/nothing"):
        assert httpx.get(f"{server.url}{path}").status_code == 401, path
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_a_foreign_host_is_refused_and_the_loopback_names_are_answered(base, tmp_path):
    with serving(base, fill_prompts(base, tmp_path)) as srv:
        # What a DNS-rebinding page sends is its own name; a missing Host is refused too.
        for host in ("evil.example", "evil.example:8000", "127.0.0.2", "localhost.evil.example", ""):
            reply = httpx.get(f"{srv.url}/v1/prompts", headers={"Host": host})
            assert reply.status_code == 421, host
            assert "does not answer to Host" in reply.json()["error"]["message"]
        for ours in ("127.0.0.1", "127.0.0.1:9", "localhost", "LOCALHOST:8000", "[::1]:8000"):
            assert httpx.get(f"{srv.url}/v1/prompts", headers={"Host": ours}).status_code == 200, ours


def test_allowed_hosts_can_name_others_or_be_turned_off(base, tmp_path):
    fill_prompts(base, tmp_path)
    with serving(base, tmp_path, allowed_hosts=("models.internal", "127.0.0.1")) as srv:
        assert httpx.get(f"{srv.url}/health", headers={"Host": "models.internal:80"}).status_code == 200
        assert httpx.get(f"{srv.url}/health", headers={"Host": "localhost"}).status_code == 421
    with serving(base, tmp_path, allowed_hosts=("*",)) as srv:
        assert httpx.get(f"{srv.url}/health", headers={"Host": "anything.example"}).status_code == 200


def test_allowed_hosts_default_follows_the_bind_address_and_bad_entries_are_refused():
    from softprompt.commands.options import allowed_hosts
    from softprompt.errors import SoftPromptError
    from softprompt.serve.config import ServeSettings

    assert allowed_hosts(None, "127.0.0.1") == allowed_hosts(None, "::1") == ("127.0.0.1", "localhost", "::1")
    assert allowed_hosts(None, "0.0.0.0") == ("*",)
    assert ServeSettings(allowed_hosts=allowed_hosts("A.example, b.example", "0.0.0.0")).allowed_hosts == (
        "a.example",
        "b.example",
    )
    for bad in ((), ("",), ("a b",), ("http://x",), ("[::1]",)):
        with pytest.raises(SoftPromptError, match="allowed-hosts"):
            ServeSettings(allowed_hosts=bad)
