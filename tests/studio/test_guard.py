"""Cross-site requests on a real socket: another page cannot start jobs, upload, stop or delete."""

from __future__ import annotations

import json

import httpx
import pytest

from softprompt.studio.guard import TOKEN_HEADER

from .conftest import client, reviews_csv, small_job, studio


@pytest.fixture(scope="module")
def server(base, tmp_path_factory):
    root = tmp_path_factory.mktemp("guard")
    with studio(base, root / "data") as running:
        yield running


def test_the_page_carries_the_token_and_is_not_cached(server):
    with httpx.Client(base_url=server.url) as c:
        page = c.get("/studio/")
    token = server.headers[TOKEN_HEADER]
    assert f'<meta name="studio-token" content="{token}">' in page.text
    assert page.headers["cache-control"] == "no-store" and len(token) >= 32


# (method, path, body kwargs): every state-changing studio endpoint.
CHANGES = [
    ("POST", "/studio/api/jobs", {"content": b'{"name": "x", "data": "rotten-tomatoes"}'}),
    ("POST", "/studio/api/uploads?filename=a.csv", {"content": b"text,label\na,b\n"}),
    ("POST", "/studio/api/hard", {"content": b'{"prompt": "x", "text": "y"}'}),
    ("POST", "/studio/api/jobs/20260101-000000-abcdef/stop", {}),
    ("POST", "/studio/api/jobs/20260101-000000-abcdef/resume", {}),
    ("DELETE", "/studio/api/jobs/20260101-000000-abcdef", {}),
    ("DELETE", "/studio/api/uploads/12345678-a.csv", {}),
    ("DELETE", "/studio/api/prompts/x", {}),
    ("DELETE", "/studio/api/cache", {}),
]


@pytest.mark.parametrize("method, path, body", CHANGES)
def test_a_foreign_page_is_refused(server, method, path, body):
    # What a page on another site can send without a preflight: text/plain, no custom header.
    plain = {"content-type": "text/plain", "origin": "https://evil.example"}
    with httpx.Client(base_url=server.url) as c:
        reply = c.request(method, path, headers=plain, **body)
        assert reply.status_code == 403 and "cross-site" in reply.json()["error"]["message"]
        # Even with the token (which it cannot read), the foreign origin or referer is refused.
        for claimed in ({"origin": "http://127.0.0.1:1"}, {"referer": "https://evil.example/page"}, {"origin": "null"}):
            reply = c.request(method, path, headers={**server.headers, **claimed}, **body)
            assert reply.status_code == 403, (claimed, reply.text)
        # Without an Origin (a script), the token is still required.
        reply = c.request(method, path, **body)
        assert reply.status_code == 403 and TOKEN_HEADER in reply.json()["error"]["message"]
        reply = c.request(method, path, headers={TOKEN_HEADER: "wrong"}, **body)
        assert reply.status_code == 403


def test_json_endpoints_refuse_other_content_types_even_with_the_token(server):
    with client(server) as c:
        for path, body in (
            ("/studio/api/jobs", small_job("rotten-tomatoes")),
            ("/studio/api/hard", {"prompt": "x", "text": "y"}),
        ):
            for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
                reply = c.post(path, content=json.dumps(body).encode(), headers={"content-type": kind})
                assert reply.status_code == 415 and "application/json" in reply.json()["error"]["message"]
    assert not server.app.state.jobs.list()  # nothing was queued


def test_the_studio_page_itself_passes(server, tmp_path):
    """Same origin + token (what app.js sends): the requests go through."""
    own = {"origin": server.url, "referer": server.url + "/studio/"}
    data = reviews_csv(tmp_path / "r.csv")
    with client(server, own) as c:
        upload = c.post("/studio/api/uploads", params={"filename": "r.csv"}, content=data.read_bytes())
        assert upload.status_code == 200, upload.text
        assert c.delete(f"/studio/api/uploads/{upload.json()['id']}").status_code == 200
    # Reading needs no token: the page's GETs, and a foreign page cannot read the answers anyway.
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/studio/api/jobs").status_code == 200


@pytest.mark.parametrize(
    "path", ["/studio/", "/studio/api/prompts", "/studio/api/uploads", "/studio/api/jobs", "/studio/api/info"]
)
def test_a_dns_rebinding_page_cannot_read_the_studio(server, path):
    # To the browser, a page whose name resolves to 127.0.0.1 is same-origin; its name is still in Host.
    with httpx.Client(base_url=server.url) as c:
        reply = c.get(path, headers={"Host": "rebind.evil.example:8000"})
        assert reply.status_code == 421 and "does not answer to Host" in reply.json()["error"]["message"]
        assert c.get(path).status_code == 200
