"""Property tests of the API: no request, however odd, gets a 500 (or breaks the server).

1. schemathesis generates requests from the published /openapi.json (valid and
   invalid bodies, odd path parameters) against a real server on 127.0.0.1.
2. hypothesis sends arbitrary JSON values and texts to the two POST endpoints,
   with real prompt names, so the model path is exercised too.
Both are bounded (a few dozen examples per operation) to stay well under a minute.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from .conftest import fill_prompts, save_prompt, serving


@pytest.fixture(scope="module")
def server(base, tmp_path_factory):
    folder = fill_prompts(base, tmp_path_factory.mktemp("prompts"))
    # The names used in the schema's examples, so generated requests also reach the model.
    save_prompt(base, folder / "sentiment", t=5, seed=8)
    save_prompt(base, folder / "summarize", t=2, seed=9, task="generate")
    with serving(base, folder, max_tokens=8) as srv:
        yield srv


@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


def test_openapi_schema_fuzz_finds_no_server_error(server, api_schema):
    # Driven by hand rather than by schemathesis' pytest plugin, whose fixture loader breaks on recent pytest.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 7
    for operation in operations:
        # The schema's own examples first (they name served prompts, so they reach the model), then generated ones.
        strategies = [*operation.get_strategies_from_examples(), operation.as_strategy()]

        @given(case=st.one_of(strategies))
        @settings(
            max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True
        )
        def check(case):
            case.call_and_validate(checks=[not_a_server_error], timeout=30)

        check()
    metrics = httpx.get(f"{server.url}/metrics").text
    for endpoint in ("/v1/classify", "/v1/completions"):  # the fuzzer got past validation to the model
        assert f'softprompt_requests_total{{endpoint="{endpoint}",status="200"}}' in metrics, [
            line for line in metrics.splitlines() if "v1/completions" in line and "requests_total" in line
        ]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
TEXT = st.text(max_size=80)
CLASSIFY = st.fixed_dictionaries(
    {"prompt": st.sampled_from(["sent", "sent-multi", "gen", "nope", "../x", ""]), "inputs": st.lists(TEXT, max_size=5)}
)
COMPLETE = st.fixed_dictionaries(
    {"model": st.sampled_from(["gen", "sent", "nope"]), "prompt": TEXT | st.lists(TEXT, max_size=3)},
    optional={
        "max_tokens": st.integers(-2, 12),
        "temperature": st.floats(-1, 3, allow_nan=False),
        "top_p": st.floats(-0.5, 1.5, allow_nan=False),
        "top_k": st.integers(-1, 50),
        "stop": st.none() | TEXT | st.lists(TEXT, max_size=5),
        "seed": st.none() | st.integers(-5, 2**64),
        "stream": st.booleans(),
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    path=st.sampled_from(["/v1/classify", "/v1/completions"]),
    body=CLASSIFY | COMPLETE | JSON,
)
def test_arbitrary_bodies_get_200_or_a_4xx_with_a_message(server, path, body):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        reply = client.post(path, json=body)
        assert reply.status_code < 500, reply.text
        if reply.status_code >= 400:
            assert reply.json()["error"]["message"]
        elif reply.headers["content-type"].startswith("text/event-stream"):
            assert reply.text.rstrip().endswith("data: [DONE]")
            assert '"error"' not in reply.text
        assert client.get("/health").json()["status"] == "ok"
