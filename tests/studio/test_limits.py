"""Caps, quotas, deletions, name collisions and robustness of the studio, on a real loopback socket."""

from __future__ import annotations

import dataclasses
import math
import threading

import httpx

import softprompt.studio.app as routes
import softprompt.studio.uploads as uploads_module
from softprompt.prompts.meta import PromptMeta
from softprompt.prompts.plain import SoftPrompt
from softprompt.recipe import defaults

from .conftest import TEMPLATE, client, reviews_csv, small_job, studio, wait_until


def save_prompt(base, folder, num_virtual_tokens: int = 2, training=None) -> None:
    meta = PromptMeta(task="classify", template=TEMPLATE, verbalizer={"pos": "p", "neg": "n"})
    if training is not None:
        meta = dataclasses.replace(meta, training=training)
    SoftPrompt.initialize(base, num_virtual_tokens, "random", meta=meta).save(folder, base)


class GatedRunner:
    """Stands in for train_job: each job waits for `gate`, so the queue's state is decided by the test."""

    def __init__(self):
        self.gate = threading.Event()

    def __call__(self, base, spec, uploads, out, *, resume, should_stop, on_step, on_start):
        on_start(1, None)
        while not self.gate.wait(0.05):
            if should_stop():
                return {"status": "interrupted"}
        raise uploads_module.UploadError("not trained in this test")


def test_info_serves_the_shared_defaults_and_the_caps(base, tmp_path):
    with studio(base, tmp_path / "d", {"max_steps": 77}) as server, client(server) as c:
        info = c.get("/studio/api/info").json()
    assert info["defaults"] == defaults() and info["defaults"]["optimizer"] == "adamw"
    assert [o["name"] for o in info["optimizers"]][0] == "adamw"
    assert (
        info["limits"]["max_steps"] == 77
        and {t["kind"]: t["default_template"] for t in info["tasks"]}["generate"] == "Input: {text}\nOutput:"
    )


def test_queue_cap_job_caps_and_kept_jobs(base, tmp_path, monkeypatch):
    runner = GatedRunner()
    monkeypatch.setattr(routes, "train_job", runner)
    limits = {"max_queued_jobs": 2, "max_jobs": 3, "max_steps": 50}
    with studio(base, tmp_path / "d", limits) as server, client(server) as c:
        job = lambda name, **kw: c.post("/studio/api/jobs", json=small_job("rotten-tomatoes", name=name, **kw))  # noqa: E731
        too_long = job("long", steps=51)
        assert too_long.status_code == 422 and too_long.json()["error"]["param"] == "steps"
        assert "Steps must be at most 50 in this studio (softprompt studio --max-steps)" in too_long.text
        first, second = job("one").json(), job("two").json()
        third = job("three")
        assert third.status_code == 429 and "2 jobs are queued or running (the limit is 2)" in third.text
        same_name = job("two")
        assert same_name.status_code == 409 and "already training a prompt named 'two'" in same_name.text
        busy = c.delete(f"/studio/api/jobs/{first['id']}")
        assert busy.status_code == 409 and "stop it before deleting it" in busy.text
        assert c.post(f"/studio/api/jobs/{second['id']}/stop").json()["state"] == "cancelled"
        third = job("three")
        assert third.status_code == 200  # room again
        c.post(f"/studio/api/jobs/{third.json()['id']}/stop")
        kept = job("four")
        assert kept.status_code == 429 and "3 jobs are kept (the limit is 3)" in kept.text
        assert c.delete(f"/studio/api/jobs/{second['id']}").json() == {"deleted": second["id"]}
        assert not (tmp_path / "d" / "jobs" / second["id"]).exists()
        assert c.get(f"/studio/api/jobs/{second['id']}").status_code == 404
        assert job("four").status_code == 200
        storage = c.get("/studio/api/storage").json()["jobs"]
        assert (storage["count"], storage["max"], storage["active"], storage["max_active"]) == (3, 3, 2, 2)
        runner.gate.set()


def test_a_job_named_like_a_prompt_is_refused_unless_asked_to_replace_it(base, tmp_path):
    data = reviews_csv(tmp_path / "r.csv")
    with studio(base, tmp_path / "d") as server, client(server) as c:
        save_prompt(base, tmp_path / "d" / "prompts" / "taken")
        upload = c.post("/studio/api/uploads", params={"filename": "r.csv"}, content=data.read_bytes()).json()
        refused = c.post("/studio/api/jobs", json=small_job(upload["id"], name="taken"))
        assert refused.status_code == 409 and "a prompt named 'taken' already exists" in refused.text
        assert "Replace an existing prompt" in refused.text
        assert SoftPrompt.load(tmp_path / "d" / "prompts" / "taken").num_virtual_tokens == 2  # untouched
        job = c.post("/studio/api/jobs", json=small_job(upload["id"], name="taken", overwrite=True)).json()
        wait_until(lambda: c.get(f"/studio/api/jobs/{job['id']}").json()["state"] == "finished", 120, 0.1)
        assert SoftPrompt.load(tmp_path / "d" / "prompts" / "taken").num_virtual_tokens == 4  # replaced, as asked


def test_uploads_quota_and_deleting_uploads_prompts_and_the_cache(base, tmp_path):
    data = reviews_csv(tmp_path / "r.csv").read_bytes()
    limits = {"max_uploads_bytes": len(data) + 100}
    with studio(base, tmp_path / "d", limits) as server, client(server) as c:
        first = c.post("/studio/api/uploads", params={"filename": "a.csv"}, content=data)
        assert first.status_code == 200
        full = c.post("/studio/api/uploads", params={"filename": "b.csv"}, content=data)
        assert full.status_code == 413 and "delete uploads you no longer need" in full.text
        assert c.delete(f"/studio/api/uploads/{first.json()['id']}").json() == {"deleted": first.json()["id"]}
        assert c.get("/studio/api/uploads").json()["data"] == []
        assert c.post("/studio/api/uploads", params={"filename": "b.csv"}, content=data).status_code == 200
        for bad in ("../x.csv", "12345678-nope.csv"):
            assert c.delete(f"/studio/api/uploads/{bad}").status_code == 404

        save_prompt(base, tmp_path / "d" / "prompts" / "mine")
        wait_until(lambda: c.get("/studio/api/prompts").json()["data"], 20)
        assert c.get("/studio/api/prompts/mine/plot.png").status_code == 200
        assert c.get("/studio/api/storage").json()["cache"]["bytes"] > 0
        assert c.delete("/studio/api/cache").json()["deleted_bytes"] > 0
        assert c.get("/studio/api/storage").json()["cache"]["bytes"] == 0
        assert c.delete("/studio/api/prompts/mine").json() == {"deleted": "mine"}
        assert c.get("/studio/api/prompts").json()["data"] == []  # at once, not at the next poll
        assert not (tmp_path / "d" / "prompts" / "mine").exists()
        assert c.delete("/studio/api/prompts/mine").status_code == 404
        assert c.delete("/studio/api/prompts/..").status_code == 404


def test_an_upload_in_use_by_a_job_is_not_deleted(base, tmp_path, monkeypatch):
    runner = GatedRunner()
    monkeypatch.setattr(routes, "train_job", runner)
    data = reviews_csv(tmp_path / "r.csv").read_bytes()
    with studio(base, tmp_path / "d") as server, client(server) as c:
        upload = c.post("/studio/api/uploads", params={"filename": "r.csv"}, content=data).json()
        job = c.post("/studio/api/jobs", json=small_job(upload["id"])).json()
        refused = c.delete(f"/studio/api/uploads/{upload['id']}")
        assert refused.status_code == 409 and job["id"] in refused.text
        runner.gate.set()


def test_other_requests_are_answered_while_an_upload_is_checked(base, tmp_path, monkeypatch):
    """The check of an upload reads the whole file; it must not hold the event loop (it did: /health stalled)."""
    checking, release = threading.Event(), threading.Event()
    real = uploads_module.describe

    def slow_describe(*args, **kwargs):
        checking.set()
        release.wait(60)  # held until the other requests have been answered
        return real(*args, **kwargs)

    monkeypatch.setattr(uploads_module, "describe", slow_describe)
    data = reviews_csv(tmp_path / "r.csv").read_bytes()
    with studio(base, tmp_path / "d") as server:
        answers = {}

        def upload() -> None:
            with client(server) as c:
                answers["upload"] = c.post("/studio/api/uploads", params={"filename": "r.csv"}, content=data)

        thread = threading.Thread(target=upload)
        thread.start()
        try:
            assert checking.wait(30)
            # Were the check on the event loop, these would wait for `release` and time out.
            with httpx.Client(base_url=server.url, timeout=10) as other:
                assert other.get("/health").status_code == 200
                assert other.get("/studio/api/jobs").status_code == 200
        finally:
            release.set()
            thread.join(60)
    assert answers["upload"].status_code == 200


def test_a_deeply_nested_json_line_is_a_clear_422(base, tmp_path):
    nested = "[" * 100_000 + "]" * 100_000
    content = f'{{"text": "ok", "label": "a"}}\n{{"text": {nested}, "label": "b"}}\n'.encode()
    with studio(base, tmp_path / "d") as server, client(server) as c:
        reply = c.post("/studio/api/uploads", params={"filename": "deep.jsonl"}, content=content)
        assert reply.status_code == 422 and "deep.jsonl:2: JSON nested too deeply" in reply.json()["error"]["message"]
        assert c.get("/studio/api/uploads").json()["data"] == []  # not kept


def test_a_prompt_with_odd_metadata_is_listed_as_broken_and_the_others_still_show(base, tmp_path):
    with studio(base, tmp_path / "d") as server, client(server) as c:
        prompts = tmp_path / "d" / "prompts"
        save_prompt(base, prompts / "good")
        save_prompt(base, prompts / "string-training", training="not an object")
        save_prompt(base, prompts / "nan-figure", training={"dev_accuracy": math.nan})
        (prompts / "not-a-prompt").mkdir()
        (prompts / "not-a-prompt" / "adapter_config.json").write_text("{")
        (prompts / "not-a-prompt" / "adapter_model.safetensors").write_bytes(b"x")

        def listing():
            reply = c.get("/studio/api/prompts")
            assert reply.status_code == 200
            body = reply.json()
            return body if len(body["data"]) + len(body["broken"]) == 4 else None

        body = wait_until(listing, 20)
    names = [p["name"] for p in body["data"]]
    broken = {b["name"]: b["error"] for b in body["broken"]}
    assert "good" in names and set(broken) >= {"string-training", "not-a-prompt"}
    assert "training" in broken["string-training"] and "nan-figure" in broken


def test_wrong_types_in_a_job_are_a_422_naming_the_field(base, tmp_path):
    with studio(base, tmp_path / "d") as server, client(server) as c:
        for field, value, message in (
            ("seed", "abc", "Seed must be a whole number, got 'abc'"),
            ("steps", True, "Steps must be a whole number or empty, got True"),
            ("lr", "fast", "Learning rate must be a number or empty, got 'fast'"),
            ("labels", ["a"], "Labels must be text or empty"),
        ):
            reply = c.post("/studio/api/jobs", json=small_job("rotten-tomatoes", **{field: value}))
            error = reply.json()["error"]
            assert reply.status_code == 422 and error["param"] == field and message in error["message"], reply.text
