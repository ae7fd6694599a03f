"""The studio on a quantised base model (int8 weights): a job trains on it, the prompt records the precision,
and it classifies and is inspected through the same app."""

from __future__ import annotations

import pytest

from softprompt.models import quantize_base
from softprompt.testing import tiny_base

from .conftest import client, reviews_csv, small_job, studio, wait_until


@pytest.fixture(scope="module")
def int8_base():
    return quantize_base(tiny_base("llama"), "int8")


def test_a_job_trains_on_int8_weights_and_its_prompt_serves(int8_base, tmp_path):
    data = reviews_csv(tmp_path / "reviews.csv")
    with studio(int8_base, tmp_path / "data") as server, client(server) as c:
        assert c.get("/studio/api/info").json()["quantization"] == "int8"
        upload = c.post("/studio/api/uploads", params={"filename": "reviews.csv"}, content=data.read_bytes()).json()
        job = c.post("/studio/api/jobs", json=small_job(upload["id"], steps=3, eval_every=3)).json()
        wait_until(lambda: c.get(f"/studio/api/jobs/{job['id']}").json()["state"] == "finished", 120, 0.2)
        wait_until(lambda: c.get("/studio/api/prompts").json()["data"], 10)
        (prompt,) = c.get("/studio/api/prompts").json()["data"]
        assert prompt["trained_precision"] == "int8"
        result = c.post("/v1/classify", json={"prompt": "reviews", "inputs": ["a good film"]}).json()["results"][0]
        assert set(result["probs"]) == {"pos", "neg"}
        assert c.get("/studio/api/prompts/reviews/inspect").json()["prompt_shape"] == [4, 32]
        assert {m["quantization"] for m in c.get("/v1/models").json()["data"]} == {"int8"}
