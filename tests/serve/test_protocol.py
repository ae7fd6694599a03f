"""Header and body timeouts and the connection cap, on raw sockets (what a slow or hostile client does)."""

from __future__ import annotations

import select
import time

import httpx
import pytest

from .conftest import connect, fill_prompts, read_response, read_to_close, serving, status_of, wait_until

HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # no blank line: the head never ends


def test_connections_that_never_finish_their_headers_are_closed_after_the_header_timeout(base, tmp_path):
    with serving(base, fill_prompts(base, tmp_path), header_timeout_s=0.5) as srv:
        socks = [connect(srv) for _ in range(150)]  # the probe: 150 slowloris connections
        for sock in socks:
            sock.sendall(HEAD)
        replies = [read_to_close(sock) for sock in socks]  # each blocks until the server closes it
        for sock in socks:
            sock.close()
        assert all(status_of(reply) == 408 for reply in replies)
        assert wait_until(lambda: len(srv.server.server_state.connections) == 0)
        assert httpx.get(f"{srv.url}/health").status_code == 200  # the server itself is fine


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(base, tmp_path):
    # Also what an idle keep-alive connection looks like: it must not get a response it never asked for.
    with serving(base, fill_prompts(base, tmp_path), header_timeout_s=0.5) as srv:
        with connect(srv) as sock:
            assert read_to_close(sock) == b""
        with connect(srv) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert status_of(read_response(sock)) == 200
            assert read_to_close(sock) == b""  # closed when the next request did not come


def test_trickling_header_bytes_does_not_extend_the_deadline(base, tmp_path):
    with serving(base, fill_prompts(base, tmp_path), header_timeout_s=0.5) as srv, connect(srv) as sock:
        for byte in HEAD * 100:  # one byte every 20 ms: 80 s in all, if each byte reset the timer
            if select.select([sock], [], [], 0)[0]:
                break  # the server answered and closed
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.02)  # the attacker's pace, not a synchronisation
        else:
            pytest.fail("the connection was still open after 80 s of trickled header bytes")
        assert status_of(read_to_close(sock)) in (408, None)  # None: reset before the 408 could be read


def test_a_body_that_stops_arriving_gets_408_after_the_body_timeout(base, tmp_path):
    with serving(base, fill_prompts(base, tmp_path), body_timeout_s=0.5) as srv, connect(srv) as sock:
        head = (
            "POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"prompt": "sent"')  # 17 of the 100 bytes promised
        reply = read_to_close(sock)
        assert status_of(reply) == 408 and b"did not arrive in time" in reply


def test_connections_past_the_cap_get_503_and_the_server_recovers(base, tmp_path):
    with serving(base, fill_prompts(base, tmp_path), max_connections=3) as srv:
        idle = [connect(srv) for _ in range(3)]
        assert wait_until(lambda: len(srv.server.server_state.connections) == 3)
        with connect(srv) as extra:
            reply = read_to_close(extra)
        assert status_of(reply) == 503 and b"too many open connections" in reply
        for sock in idle:
            sock.close()
        assert wait_until(lambda: len(srv.server.server_state.connections) == 0)
        assert httpx.get(f"{srv.url}/health").status_code == 200
