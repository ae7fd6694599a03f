"""Training jobs: start (queue), list, one job with its curves, stop, resume, delete."""

from __future__ import annotations

import asyncio
import statistics
import time

from fastapi import APIRouter, Depends, Request

from ...errors import SoftPromptError, worded
from ...serve.app import APIError
from ..guard import require_json
from ..jobs import Job, JobQueue
from ..runner import JobSpec, NameTaken, form_label, resolve
from ..state import Studio, user_errors

router = APIRouter()


@router.post("/api/jobs", dependencies=[Depends(require_json)])
async def start(request: Request, state: Studio) -> dict:
    try:
        raw = await request.json()
    except (ValueError, RecursionError):
        raise APIError(400, "the request body must be a JSON object") from None
    with user_errors():
        spec = JobSpec.from_dict(raw)
        with worded(form_label):
            state.limits.check_job(spec)
        if (state.folders.prompts / spec.name).exists() and not spec.overwrite:
            raise NameTaken(spec.name)
        _, data = await asyncio.to_thread(resolve, spec, state.uploads)  # data problems show up now
        job = state.jobs.submit(spec)
    return {**_job(state.jobs, job), "train_examples": len(data.train), "dev_examples": len(data.dev)}


@router.get("/api/jobs")
async def list_jobs(state: Studio) -> dict:
    return {"data": [_job(state.jobs, job) for job in state.jobs.list()]}


@router.get("/api/jobs/{job_id}")
async def job_detail(job_id: str, state: Studio) -> dict:
    """One job with its loss/dev curves, examples/s and time left."""
    try:
        job = state.jobs.get(job_id)
    except SoftPromptError as e:
        raise APIError(404, str(e), kind="not_found_error") from None
    return {**_job(state.jobs, job), **_curves(job, state.jobs.metrics(job.id))}


@router.post("/api/jobs/{job_id}/stop")
async def stop(job_id: str, state: Studio) -> dict:
    with user_errors():
        return _job(state.jobs, state.jobs.stop(job_id))


@router.post("/api/jobs/{job_id}/resume")
async def resume(job_id: str, state: Studio) -> dict:
    with user_errors():
        return _job(state.jobs, state.jobs.resume(job_id))


@router.delete("/api/jobs/{job_id}")
async def delete_job(job_id: str, state: Studio) -> dict:
    """Remove a finished job's folder (its prompt stays)."""
    with user_errors():
        await asyncio.to_thread(state.jobs.delete, job_id)
    return {"deleted": job_id}


def _job(jobs: JobQueue, job: Job) -> dict:
    return {**job.to_dict(), "name": job.name, "resumable": jobs.resumable(job)}


def _curves(job: Job, records: list[dict]) -> dict:
    """Loss per step, dev metric per evaluation, recent examples/s and time left."""
    loss = [[r["step"], r["loss"]] for r in records if "loss" in r]
    key = f"dev_{job.metric}" if job.metric else None
    dev = [[r["step"], r[key]] for r in records if key and key in r]
    speeds = [r["examples_per_s"] for r in records[-20:] if r.get("examples_per_s")]
    speed = statistics.median(speeds) if speeds else None
    eta = None
    if speed and job.total_steps and job.state == "running":
        per_step = JobSpec.from_dict(job.spec).config().batch_size / speed  # a blank field: its default
        eta = max(0.0, (job.total_steps - job.step) * per_step)
    elapsed = (job.ended or time.time()) - job.started if job.started else None
    return {
        "loss": loss,
        "dev": dev,
        "dev_metric": job.metric,
        "examples_per_s": speed,
        "eta_s": eta,
        "elapsed_s": elapsed,
    }
