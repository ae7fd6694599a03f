"""The studio API on a real socket: upload, train, list, try (soft and hard), inspect, plot, download, errors, restart."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from softprompt.prompts.plain import SoftPrompt

from .conftest import TEMPLATE, client, reviews_csv, small_job, studio, wait_until


@pytest.fixture(scope="module")
def trained(base, tmp_path_factory):
    """A studio that has trained one prompt from an uploaded CSV; yields (server, client, upload, job)."""
    root = tmp_path_factory.mktemp("studio")
    data = reviews_csv(root / "reviews.csv")
    with (
        studio(base, root / "data", {"max_upload_bytes": 4096}) as server,
        client(server) as c,
    ):
        upload = c.post("/studio/api/uploads", params={"filename": "reviews.csv"}, content=data.read_bytes())
        assert upload.status_code == 200, upload.text
        started = c.post("/studio/api/jobs", json=small_job(upload.json()["id"]))
        assert started.status_code == 200, started.text
        job = started.json()
        assert (job["state"], job["train_examples"], job["dev_examples"]) == ("queued", 22, 2)
        wait_until(lambda: c.get(f"/studio/api/jobs/{job['id']}").json()["state"] == "finished", 120, 0.2)
        wait_until(lambda: c.get("/studio/api/prompts").json()["data"], 10)
        yield server, c, upload.json(), c.get(f"/studio/api/jobs/{job['id']}").json()


def test_page_and_static_files_are_served_without_external_links(trained):
    _, c, _, _ = trained
    page = c.get("/studio/")
    assert page.status_code == 200 and "softprompt <span>studio</span>" in page.text
    assert c.get("/", follow_redirects=False).headers["location"] == "/studio/"
    for name in ("app.js", "style.css"):
        asset = c.get(f"/studio/static/{name}")
        assert asset.status_code == 200
        assert "http://" not in asset.text.replace("http://www.w3.org/2000/svg", "") and "https://" not in asset.text
    assert "https://" not in page.text and "http://" not in page.text
    assert c.get("/studio/static/../routes.py").status_code == 404


def test_upload_answers_columns_preview_and_guesses(trained):
    _, c, upload, _ = trained
    assert upload["columns"] == ["text", "label", "source"] and upload["rows"] == 24
    assert (upload["text_column"], upload["label_column"]) == ("text", "label")
    assert upload["label_counts"] == {"pos": 12, "neg": 12}
    assert upload["preview"][0]["text"] == "a good film, number 0"
    assert [u["id"] for u in c.get("/studio/api/uploads").json()["data"]] == [upload["id"]]


def test_job_progress_has_curves_and_the_prompt_is_listed(trained):
    _, c, _, job = trained
    assert job["step"] == job["total_steps"] == 6 and job["published"] == "reviews"
    assert [s for s, _ in job["loss"]] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in job["dev"]] == [3, 6] and job["dev_metric"] == "accuracy"
    assert job["examples_per_s"] > 0 and job["eta_s"] is None
    (prompt,) = c.get("/studio/api/prompts").json()["data"]
    assert (prompt["name"], prompt["task"], prompt["labels"], prompt["num_virtual_tokens"]) == (
        "reviews", "classify", ["pos", "neg"], 4,
    )  # fmt: skip
    assert prompt["template"] == TEMPLATE and prompt["training"]["steps"] == 6 and prompt["bytes"] > 0
    assert c.get("/studio/api/jobs").json()["data"][0]["id"] == job["id"]


def test_try_soft_and_hard_prompt_side_by_side(trained):
    server, c, _, _ = trained
    soft = c.post("/v1/classify", json={"prompt": "reviews", "inputs": ["a good film"]}).json()["results"][0]
    hard = c.post("/studio/api/hard", json={"prompt": "reviews", "text": "a good film", "hard_prompt": "Is it good?"})
    body = hard.json()
    assert body["template"] == "Is it good?\n" + TEMPLATE
    assert set(body["probs"]) == set(soft["probs"]) == {"pos", "neg"}
    assert sum(body["probs"].values()) == pytest.approx(1.0, abs=1e-5) and body["probs"] != soft["probs"]
    # {text} in the hard prompt makes it the whole template; an empty one is the template alone.
    whole = c.post("/studio/api/hard", json={"prompt": "reviews", "text": "x", "hard_prompt": "Q: {text} A: "}).json()
    assert whole["template"] == "Q: {text} A: "
    assert c.post("/studio/api/hard", json={"prompt": "reviews", "text": "x"}).json()["template"] == TEMPLATE
    assert c.post("/studio/api/hard", json={"prompt": "nope", "text": "x"}).status_code == 404
    assert c.post("/studio/api/hard", json={"prompt": "reviews", "text": "  "}).status_code == 422


def test_inspect_plot_and_download(trained, tmp_path, base):
    _, c, _, _ = trained
    table = c.get("/studio/api/prompts/reviews/inspect").json()
    assert table["prompt_shape"] == [4, 32] and len(table["tokens"]) == 4
    assert len(table["tokens"][0]["neighbours"]) == 5 and table["summary"]
    plot = c.get("/studio/api/prompts/reviews/plot.png")
    assert plot.status_code == 200 and plot.content[:8] == b"\x89PNG\r\n\x1a\n"
    zipped = c.get("/studio/api/prompts/reviews/download")
    assert zipped.headers["content-disposition"] == 'attachment; filename="reviews.zip"'
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as z:
        names = z.namelist()
        z.extractall(tmp_path)
    assert "reviews/adapter_config.json" in names and "reviews/adapter_model.safetensors" in names
    assert not any("checkpoint" in n for n in names)
    assert SoftPrompt.load(tmp_path / "reviews", base).num_virtual_tokens == 4
    for bad in ("nope", "..", "%2e%2e"):
        assert c.get(f"/studio/api/prompts/{bad}/download").status_code == 404


def test_a_deep_prompt_is_chosen_in_the_form_trained_listed_and_inspected_by_layer(trained):
    _, c, upload, _ = trained
    info = c.get("/studio/api/info").json()
    assert info["methods"] == ["prompt", "prefix"] and info["reparams"] == ["none", "mlp", "residual"]
    assert (info["defaults"]["method"], info["defaults"]["reparam"]) == ("prefix", "none")  # the measured default
    job = c.post("/studio/api/jobs", json=small_job(upload["id"], "deep", method="prefix", reparam="residual"))
    assert job.status_code == 200, job.text
    wait_until(lambda: c.get(f"/studio/api/jobs/{job.json()['id']}").json()["state"] == "finished", 120, 0.2)
    wait_until(lambda: any(p["name"] == "deep" for p in c.get("/studio/api/prompts").json()["data"]), 10)
    listed = {p["name"]: p for p in c.get("/studio/api/prompts").json()["data"]}
    assert listed["deep"]["method"] == "prefix" and listed["reviews"]["method"] == "prompt"
    assert listed["deep"]["training"]["reparam"] == "residual"
    table = c.get("/studio/api/prompts/deep/inspect").json()
    assert table["method"] == "prefix" and len(table["layers"]) == 2 and "moved most" in table["summary"]
    assert c.get("/studio/api/prompts/deep/plot.png").content[:4] == b"\x89PNG"
    bad = c.post("/studio/api/jobs", json=small_job(upload["id"], "deep2", method="lora"))
    assert bad.status_code == 422 and "Method must be one of prompt, prefix" in bad.json()["error"]["message"]


@pytest.mark.parametrize(
    "name, content, status, message",
    [
        ("big.csv", b"text,label\n" + b"some text,a\n" * 400, 413, "larger than the upload limit"),
        ("notes.txt", b"hello", 422, "unsupported file type"),
        ("bad.csv", b"text,label\n\xff,a\n", 422, r"bad.csv:2: not valid UTF-8"),
    ],
)
def test_bad_uploads_get_clear_messages(trained, name, content, status, message):
    _, c, _, _ = trained
    reply = c.post("/studio/api/uploads", params={"filename": name}, content=content)
    assert reply.status_code == status
    assert pytest.importorskip("re").search(message, reply.json()["error"]["message"])


def test_bad_jobs_get_clear_messages(trained):
    _, c, upload, _ = trained
    cases = [
        (small_job(upload["id"], text_column="body"), "missing column 'body'"),
        (small_job(upload["id"], name="a/b"), "Prompt name: invalid prompt name"),
        (small_job("12345678-missing.csv"), "no uploaded file"),
        (small_job(upload["id"], labels="pos=p,other=n"), "reviews.csv:3: 'label' is 'neg', not one of the labels"),
        (small_job(upload["id"], labels="pos=p"), "not one of the labels: 'pos'"),
    ]
    for spec, message in cases:
        reply = c.post("/studio/api/jobs", json={**spec, "name": spec["name"] + "-2"})
        assert reply.status_code in (404, 422) and message in reply.json()["error"]["message"], reply.text
    assert c.post("/studio/api/jobs", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    assert c.get("/studio/api/jobs/nope").status_code == 404
    assert c.post("/studio/api/jobs/nope/stop").status_code == 422


def test_a_restart_keeps_prompts_and_reports_an_interrupted_job_as_resumable(base, tmp_path):
    data = reviews_csv(tmp_path / "r.csv")
    with studio(base, tmp_path / "data") as server, client(server) as c:
        upload = c.post("/studio/api/uploads", params={"filename": "r.csv"}, content=data.read_bytes()).json()
        job = c.post("/studio/api/jobs", json=small_job(upload["id"], steps=200)).json()
        wait_until(lambda: c.get(f"/studio/api/jobs/{job['id']}").json()["step"] >= 1, 60)
        # Simulate a crash: the record says "running" when the next server starts.
        server.app.state.jobs.stop(job["id"])
        server.app.state.jobs.wait(job["id"], 60)
    record_path = tmp_path / "data" / "jobs" / job["id"] / "job.json"
    record = json.loads(record_path.read_text())
    record["state"] = "running"
    record_path.write_text(json.dumps(record))
    with studio(base, tmp_path / "data") as server, client(server) as c:
        again = c.get(f"/studio/api/jobs/{job['id']}").json()
        assert again["state"] == "interrupted" and again["resumable"] and "resume" in again["error"]
        wait_until(lambda: c.get("/studio/api/prompts").json()["data"], 10)  # the stopped job's best prompt
        assert c.post(f"/studio/api/jobs/{job['id']}/resume").json()["state"] == "queued"
        wait_until(lambda: c.get(f"/studio/api/jobs/{job['id']}").json()["step"] > again["step"], 60)
        assert c.post(f"/studio/api/jobs/{job['id']}/stop").status_code == 200
