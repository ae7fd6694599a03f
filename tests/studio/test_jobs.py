"""The job queue: one job at a time in order, stop/cancel, persistence across a restart, real stop + resume."""

from __future__ import annotations

import json
import threading

import pytest

from softprompt.errors import SoftPromptError
from softprompt.prompts.methods import load_prompt
from softprompt.prompts.plain import SoftPrompt
from softprompt.studio.jobs import JOB_FILE, JobBusy, JobQueue, QueueFull
from softprompt.studio.runner import JobSpec, NameTaken, publish, resolve, train_job
from softprompt.studio.uploads import UploadStore

from .conftest import TEMPLATE, reviews_csv, small_job, wait_until


class FakeRunner:
    """Steps until `total` or a stop; records the order and overlap of runs; fails names starting with 'bad'."""

    def __init__(self, total: int = 3):
        self.total, self.order, self.active, self.overlap = total, [], 0, False
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, spec, out, *, resume, should_stop, on_step, on_start):
        self.active += 1
        self.overlap |= self.active > 1
        self.order.append((spec.name, resume))
        try:
            if spec.name.startswith("bad"):
                raise SoftPromptError("the label column 'x' is missing")
            on_start(self.total, "accuracy")
            (out / "checkpoint").mkdir(parents=True, exist_ok=True)
            for step in range(1, self.total + 1):
                self.gate.wait(10)
                on_step(step)
                if should_stop():
                    return {"status": "interrupted", "steps": step}
            return {"status": "finished", "steps": self.total}
        finally:
            self.active -= 1


def spec(name: str) -> JobSpec:
    return JobSpec(name=name, data="x")


def test_jobs_run_one_at_a_time_in_order_and_failures_are_reported(tmp_path):
    runner, published = FakeRunner(), []
    queue = JobQueue(tmp_path, runner, lambda job, run_dir: published.append(job.name))
    try:
        ids = [queue.submit(spec(n)).id for n in ("one", "bad-two", "three")]
        done = [queue.wait(i, 20) for i in ids]
    finally:
        queue.close()
    assert [j.state for j in done] == ["finished", "failed", "finished"]
    assert [name for name, _ in runner.order] == ["one", "bad-two", "three"] and not runner.overlap
    assert published == ["one", "three"]
    assert done[1].error == "the label column 'x' is missing" and done[0].step == done[0].total_steps == 3
    with pytest.raises(SoftPromptError, match="finished; only queued or running"):
        queue.stop(ids[0])


def test_stop_a_running_job_cancel_a_queued_one_and_resume(tmp_path):
    runner = FakeRunner(total=50)
    runner.gate.clear()
    queue = JobQueue(tmp_path, runner, lambda job, run_dir: None)
    try:
        first, second = queue.submit(spec("first")), queue.submit(spec("second"))
        with pytest.raises(SoftPromptError, match="already training a prompt named 'first'"):
            queue.submit(spec("first"))
        assert queue.stop(second.id).state == "cancelled"
        # Stop `first` once it runs (stopping it while still queued would cancel it instead).
        wait_until(lambda: (queue.run_dir(first.id) / "checkpoint").is_dir())
        queue.stop(first.id)
        runner.gate.set()
        stopped = queue.wait(first.id, 20)
        assert stopped.state == "stopped" and queue.resumable(stopped) and stopped.step < 50
        queue.resume(first.id)
        assert queue.wait(first.id, 20).state == "finished"
    finally:
        queue.close()
    assert runner.order == [("first", False), ("first", True)]


def test_a_restart_keeps_finished_jobs_and_reports_the_running_one_as_interrupted(tmp_path):
    runner = FakeRunner(total=1000)
    runner.gate.clear()
    queue = JobQueue(tmp_path, FakeRunner(total=1), lambda job, run_dir: None)
    done = queue.wait(queue.submit(spec("done")).id, 20)
    queue.close()
    # A second server process: its job is "running" when the process dies (simulated: the record is left so).
    queue = JobQueue(tmp_path, runner, lambda job, run_dir: None)
    running = queue.submit(spec("killed"))
    # Let the job start and write its checkpoint folder before this "server" goes away.
    wait_until(lambda: (queue.run_dir(running.id) / "checkpoint").is_dir())
    runner.gate.set()
    record = json.loads((tmp_path / running.id / JOB_FILE).read_text())
    queue.close()
    record.update(state="running", step=2)
    (tmp_path / running.id / JOB_FILE).write_text(json.dumps(record))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / JOB_FILE).write_text("{not json")

    restarted = JobQueue(tmp_path, FakeRunner(total=2), lambda job, run_dir: None)
    try:
        assert restarted.get(done.id).state == "finished"
        again = restarted.get(running.id)
        assert again.state == "interrupted" and "resume continues from the last checkpoint" in again.error
        assert restarted.resumable(again)
        restarted.resume(running.id)
        assert restarted.wait(running.id, 20).state == "finished"
        assert len(restarted.list()) == 2
    finally:
        restarted.close()


def test_real_training_stops_resumes_and_publishes_the_prompt(base, tmp_path):
    uploads = UploadStore(tmp_path / "uploads")
    path = reviews_csv(tmp_path / "uploads" / "12345678-reviews.csv")
    job_spec = JobSpec.from_dict(small_job(path.name, steps=6, eval_every=2))
    assert len(resolve(job_spec, uploads)[1].train) == 22
    prompts = tmp_path / "prompts"
    queue = JobQueue(
        tmp_path / "jobs",
        lambda spec, out, **kw: train_job(base, spec, uploads, out, **kw),
        lambda job, run_dir: publish(run_dir, prompts, job.name, job.id, replace=False),
    )
    try:
        job = queue.submit(job_spec)
        wait_until(lambda: queue.get(job.id).step >= 2, interval=0.005)
        queue.stop(job.id)  # honoured after the current step, with a checkpoint
        stopped = queue.wait(job.id, 60)
        assert stopped.state == "stopped" and 2 <= stopped.step < 6 and queue.resumable(stopped)
        assert (prompts / "reviews" / "adapter_model.safetensors").is_file()  # the best so far is usable
        queue.resume(job.id)
        finished = queue.wait(job.id, 60)
    finally:
        queue.close()
    assert finished.state == "finished" and finished.step == 6 and finished.result["steps"] == 6
    losses = [r["step"] for r in queue.metrics(job.id) if "loss" in r]
    assert losses == [1, 2, 3, 4, 5, 6]  # the resumed run continued, no step repeated or lost
    prompt = load_prompt(prompts / "reviews", base)  # the default method's prompt (a deep one)
    assert prompt.meta.template == TEMPLATE and prompt.meta.verbalizer == {"pos": "p", "neg": "n"}
    assert prompt.meta.training["status"] == "finished" and not (prompts / "reviews" / "checkpoint").exists()


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"name": "../x", "data": "d"}, "invalid prompt name"),
        ({"name": "x", "data": "d", "steps": 0}, "Steps must be at least 1"),
        ({"name": "x", "data": "d", "seed": "abc"}, "Seed must be a whole number, got 'abc'"),
        ({"name": "x", "data": "d", "batch_size": 2.5}, "Batch must be a whole number"),
        ({"name": "x", "data": "d", "overwrite": "yes"}, "Replace an existing prompt must be true or false"),
        ({"name": "x", "data": "d", "template": "no slot"}, r"Template must contain \{text\}"),
        ({"name": "x", "data": "d", "task": "regress"}, "Task must be one of"),
        ({"name": "x", "data": "d", "wat": 1}, "unknown job settings: wat"),
        ({"name": "x", "data": "d", "lr": -1}, "Learning rate must be a positive number"),
        ({"name": "x", "data": "d", "labels": "a=x,a=y"}, "Labels: label 'a' is given twice"),
        ([1], "must be a JSON object"),
    ],
)
def test_bad_job_settings_are_refused_with_a_message(raw, message):
    with pytest.raises(SoftPromptError, match=message):
        JobSpec.from_dict(raw)


def test_data_problems_are_found_before_queueing(tmp_path):
    uploads = UploadStore(tmp_path)
    path = reviews_csv(tmp_path / "12345678-r.csv")
    with pytest.raises(SoftPromptError, match=r"^r\.csv:2: missing column 'body'.*Text column"):
        resolve(JobSpec.from_dict(small_job(path.name, text_column="body")), uploads)
    with pytest.raises(SoftPromptError, match="no uploaded file"):
        resolve(JobSpec.from_dict(small_job("12345678-gone.csv")), uploads)
    with pytest.raises(SoftPromptError) as e:
        resolve(JobSpec.from_dict(small_job(path.name, label_column="nope")), uploads)
    assert "missing column 'nope'" in str(e.value) and str(tmp_path) not in str(e.value)


def test_the_queue_is_capped_and_finished_jobs_can_be_deleted(tmp_path):
    runner = FakeRunner(total=50)
    runner.gate.clear()
    queue = JobQueue(tmp_path, runner, lambda job, run_dir: None, max_active=2, max_kept=3)
    try:
        first, second = queue.submit(spec("a")), queue.submit(spec("b"))
        with pytest.raises(QueueFull, match="2 jobs are queued or running"):
            queue.submit(spec("c"))
        with pytest.raises(JobBusy, match="stop it before deleting it"):
            queue.delete(second.id)
        queue.stop(second.id)
        queue.delete(second.id)
        assert not (tmp_path / second.id).exists() and [j.id for j in queue.list()] == [first.id]
        with pytest.raises(SoftPromptError, match="no job"):
            queue.get(second.id)
    finally:
        runner.gate.set()
        queue.close()


def test_publish_never_replaces_another_prompt_unless_asked(tmp_path, base):
    from softprompt.prompts.meta import PromptMeta

    run_dir = tmp_path / "jobs" / "job1" / "run"
    SoftPrompt.initialize(base, 3, "random", meta=PromptMeta()).save(run_dir, base)
    (run_dir / "checkpoint").mkdir()
    prompts = tmp_path / "prompts"
    SoftPrompt.initialize(base, 2, "random", meta=PromptMeta()).save(prompts / "theirs", base)
    with pytest.raises(NameTaken, match="a prompt named 'theirs' already exists.*kept in the job's folder \\(job1\\)"):
        publish(run_dir, prompts, "theirs", "job1", replace=False)
    assert SoftPrompt.load(prompts / "theirs").num_virtual_tokens == 2
    publish(run_dir, prompts, "theirs", "job1", replace=True)
    assert SoftPrompt.load(prompts / "theirs").num_virtual_tokens == 3
    assert not (prompts / "theirs" / "checkpoint").exists()
    # Its own earlier result a job may replace (a stopped job resumed); once another job took the name, not.
    publish(run_dir, prompts, "theirs", "job1", replace=False)
    publish(run_dir, prompts, "theirs", "job2", replace=True)
    with pytest.raises(NameTaken):
        publish(run_dir, prompts, "theirs", "job1", replace=False)


def test_a_job_whose_name_was_taken_meanwhile_fails_and_keeps_its_prompt(tmp_path):
    def publish_taken(job, run_dir):
        raise NameTaken(job.name, run_dir)

    queue = JobQueue(tmp_path, FakeRunner(total=1), publish_taken)
    try:
        job = queue.wait(queue.submit(spec("late")).id, 20)
    finally:
        queue.close()
    assert job.state == "failed" and "a prompt named 'late' already exists" in job.error and job.published is None
