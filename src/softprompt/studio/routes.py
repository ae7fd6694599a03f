"""The studio: the serve app plus a page and its API under /studio.

`create_studio_app(predictor, registry, base, data_dir)` builds the ordinary
serving app (`serve.app.create_app`, so /v1/* works as usual and the page
uses /v1/classify and streamed /v1/completions to try prompts) and adds:

    GET    /studio/                        the page (static files, no CDN; carries the request token)
    GET    /studio/api/info                model, built-in datasets, defaults, caps
    GET    /studio/api/storage             what uploads/, jobs/ and cache/ use, against their quotas
    GET    /studio/api/prompts             prompts with task, labels, T, size, training figures; broken ones apart
    DELETE /studio/api/prompts/{name}      remove a prompt folder
    POST   /studio/api/hard                the same text with a typed hard prompt, for side by side
    GET    /studio/api/prompts/{name}/inspect    nearest-token table (JSON)
    GET    /studio/api/prompts/{name}/plot.png   the inspect plot (cached in cache/)
    GET    /studio/api/prompts/{name}/download   the prompt folder as a zip
    POST   /studio/api/uploads?filename=F  raw body = the file; answers columns, preview, guesses
    GET    /studio/api/uploads             uploaded files
    DELETE /studio/api/uploads/{id}        remove an uploaded file
    POST   /studio/api/jobs                start (queue) a training job
    GET    /studio/api/jobs[/{id}]         jobs; one job with its loss/dev curves, examples/s, time left
    POST   /studio/api/jobs/{id}/stop | /resume
    DELETE /studio/api/jobs/{id}           remove a finished job's folder (its prompt stays)
    DELETE /studio/api/cache               remove the cached plots

Every POST and DELETE under /studio/api passes `guard.RequestGuard` (the page's
token, the studio's own origin) and JSON endpoints refuse other content types.
Files live under the data folder: prompts/ (served, hot-reloaded), uploads/,
jobs/, cache/, each bounded (`settings.StudioSettings`). Model work for the
page (hard prompts) runs on the batcher's worker thread, between serving
batches; training runs on the job thread with the same frozen base model
(nothing in it is written, only the prompt learns).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import shutil
import statistics
import tempfile
import threading
import time
import zipfile
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from ..errors import FieldError, SoftPromptError, worded
from ..infer import GenerationConfig, InputError
from ..models import BaseModel as LanguageModel
from ..serve.app import APIError, create_app
from ..serve.config import ServeSettings
from ..serve.operations import Generate, Prompted
from ..serve.registry import PromptRegistry, name_problem
from ..tasks import describe_kinds, kind_has_labels, task_from_meta
from .guard import TOKEN_HEADER, RequestGuard, require_json
from .jobs import Job, JobQueue
from .runner import JobSpec, NameTaken, form_label, publish, resolve, train_job
from .settings import StudioSettings
from .storage import DataFolder, folder_bytes, trim_to
from .uploads import UploadStore

STATIC = Path(__file__).parent / "static"
TOKEN_SLOT = "{{studio_token}}"  # in index.html, filled per process
BODY_MARGIN = 64 * 1024  # request size allowance beyond the upload limit
MAX_TEXT_CHARS = 4000
HARD_MAX_TOKENS = 64


class HardRequest(BaseModel):
    prompt: str = Field(description="the soft prompt whose task (template, labels) the hard prompt borrows")
    text: str = Field(max_length=MAX_TEXT_CHARS)
    hard_prompt: str = Field("", max_length=MAX_TEXT_CHARS, description="instruction put before the template")
    max_tokens: int = Field(40, ge=1, le=HARD_MAX_TOKENS)


def create_studio_app(
    predictor,
    registry: PromptRegistry,
    base: LanguageModel,
    data_dir: str | Path,
    settings: ServeSettings | None = None,
    studio: StudioSettings | None = None,
) -> FastAPI:
    """The serving app for `registry` (whose folder must be data_dir/prompts) plus the studio."""
    folders = DataFolder(Path(data_dir))
    if registry.folder.resolve() != folders.prompts.resolve():
        raise SoftPromptError(f"the studio serves {folders.prompts}; the registry watches {registry.folder}")
    studio = studio or StudioSettings()
    settings = settings or ServeSettings()
    if settings.max_body_bytes < studio.max_upload_bytes + BODY_MARGIN:
        settings = dataclasses.replace(settings, max_body_bytes=studio.max_upload_bytes + BODY_MARGIN)
    app = create_app(predictor, registry, settings)
    uploads = UploadStore(folders.uploads, studio.max_upload_bytes, studio.max_uploads_bytes)

    def runner(spec, out, **kwargs):
        return train_job(base, spec, uploads, out, **kwargs)

    def publish_job(job: Job, run_dir: Path) -> None:
        publish(run_dir, folders.prompts, job.name, job.id, replace=bool(job.spec.get("overwrite")))

    jobs = JobQueue(folders.jobs, runner, publish_job, max_active=studio.max_queued_jobs, max_kept=studio.max_jobs)
    guard = RequestGuard()
    app.state.jobs, app.state.uploads, app.state.studio_token = jobs, uploads, guard.token
    _close_jobs_on_shutdown(app, jobs)
    app.include_router(_router(app, predictor, registry, base, folders, uploads, jobs, studio, guard))
    app.mount("/studio/static", StaticFiles(directory=STATIC), name="studio-static")
    return app


def _close_jobs_on_shutdown(app: FastAPI, jobs: JobQueue) -> None:
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a):
        async with inner(a) as state:
            yield state
        # The running job stops at its next step with a checkpoint: it reads as stopped, resumable.
        await asyncio.to_thread(jobs.close)

    app.router.lifespan_context = lifespan


def user_error(e: SoftPromptError) -> APIError:
    """A user mistake as the page's error: 422 unless the error says otherwise; a setting's name as `param`."""
    return APIError(getattr(e, "status", 422), str(e), param=e.field if isinstance(e, FieldError) else None)


def _router(
    app,
    predictor,
    registry,
    base,
    folders: DataFolder,
    uploads: UploadStore,
    jobs: JobQueue,
    studio: StudioSettings,
    guard: RequestGuard,
) -> APIRouter:
    router = APIRouter(prefix="/studio", include_in_schema=False, dependencies=[Depends(guard)])
    batcher = app.state.batcher
    plot_lock = threading.Lock()  # matplotlib's pyplot is not thread-safe
    page_html = (STATIC / "index.html").read_text(encoding="utf-8").replace(TOKEN_SLOT, guard.token)

    def loaded(name: str):
        prompt = None if name_problem(name) else predictor.prompts.get(name)
        if prompt is None:
            raise APIError(404, f"no prompt named {name[:80]!r}", kind="not_found_error")
        return prompt

    def in_use(check) -> Job | None:
        return next((j for j in jobs.list() if j.state in ("queued", "running") and check(j)), None)

    @router.get("")
    @router.get("/")
    async def page() -> HTMLResponse:
        # no-store: the page carries this process's token.
        return HTMLResponse(page_html, headers={"Cache-Control": "no-store"})

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/studio/")

    @router.get("/api/info")
    async def info() -> dict:
        from ..data import BUILTIN_DATASETS
        from ..optim import DEFAULT_LR, OPTIMIZERS
        from ..recipe import defaults
        from ..train_config import METHODS, REPARAM_LR_SCALE, REPARAMS

        return {
            "model": base.name,
            "max_upload_bytes": uploads.max_bytes,
            "defaults": defaults(),
            "tasks": describe_kinds(),
            "optimizers": [
                {"name": o, "lr": DEFAULT_LR[o]} for o in sorted(OPTIMIZERS, key=lambda o: o != defaults()["optimizer"])
            ],
            "methods": list(METHODS),
            "reparam_lr_scale": REPARAM_LR_SCALE,
            "reparams": list(REPARAMS),
            "limits": dataclasses.asdict(studio),
            "token_header": TOKEN_HEADER,
            "datasets": [
                {
                    "name": d.name,
                    "task": d.task,
                    "template": d.template,
                    "labels": dict(d.verbalizer),
                    "description": d.description,
                }
                for d in BUILTIN_DATASETS.values()
            ],
        }

    @router.get("/api/storage")
    async def storage() -> dict:
        def measure() -> dict:
            kept = jobs.list()
            return {
                "uploads": {"bytes": uploads.used_bytes(), "quota": uploads.max_total_bytes},
                "jobs": {
                    "count": len(kept),
                    "max": jobs.max_kept,
                    "active": sum(j.state in ("queued", "running") for j in kept),
                    "max_active": jobs.max_active,
                    "bytes": folder_bytes(folders.jobs),
                },
                "cache": {"bytes": folder_bytes(folders.cache), "quota": studio.max_cache_bytes},
            }

        return await asyncio.to_thread(measure)

    @router.get("/api/prompts")
    async def prompts() -> dict:
        listed, broken = [], []
        for name, entry in sorted(registry.infos.items()):
            try:
                listed.append(_prompt_entry(entry, predictor.prompts.get(name)))
            except Exception as e:  # one odd folder must not hide the others
                broken.append({"name": name, "error": f"cannot be shown: {e}"})
        broken += [{"name": name, "error": error} for name, error in sorted(registry.errors.items())]
        return {"data": listed, "broken": broken, "errors": dict(registry.errors)}

    @router.delete("/api/prompts/{name}")
    async def delete_prompt(name: str) -> dict:
        if name_problem(name) or not (folders.prompts / name).is_dir() or (folders.prompts / name).is_symlink():
            raise APIError(404, f"no prompt folder named {name[:80]!r}", kind="not_found_error")
        await asyncio.to_thread(_remove_folder, folders.prompts / name)
        await batcher.call(registry.refresh)  # not served from now on, not only from the next poll
        return {"deleted": name}

    @router.post("/api/hard", dependencies=[Depends(require_json)])
    async def hard(body: HardRequest) -> dict:
        """Answer `text` with a typed hard prompt in place of the soft prompt (same template and labels)."""
        prompt = loaded(body.prompt)
        if not body.text.strip():
            raise APIError(422, "type a text to try", param="text")
        template = prompt.meta.template or "{text}"
        if body.hard_prompt.count("{text}") == 1:
            template = body.hard_prompt
        elif body.hard_prompt.strip():
            template = body.hard_prompt.rstrip() + "\n" + template
        if kind_has_labels(prompt.meta.task) and prompt.meta.verbalizer:
            try:
                probs = await batcher.call(lambda: _classify_hard(base, prompt.meta, template, body.text))
            except SoftPromptError as e:
                raise APIError(422, str(e)) from None
            return {"template": template, "label": max(probs, key=probs.get), "probs": probs}
        config = GenerationConfig(max_new_tokens=body.max_tokens)
        (out,) = await batcher.submit(Generate(config), [Prompted(None, template.replace("{text}", body.text))])
        if isinstance(out, InputError):
            raise APIError(422, out.message)
        return {"template": template, "text": out.text}

    @router.get("/api/prompts/{name}/inspect")
    async def inspect(name: str, top_k: int = 5) -> dict:
        from ..inspect_prompt import inspect_prompt

        prompt = loaded(name)
        try:
            result = await asyncio.to_thread(inspect_prompt, prompt, base, top_k=top_k)
        except SoftPromptError as e:
            raise user_error(e) from None
        return result.to_dict()

    @router.get("/api/prompts/{name}/plot.png")
    async def plot(name: str) -> FileResponse:
        from ..prompt_cache import prompt_hash

        prompt = loaded(name)
        path = folders.cache / f"plot-{name}-{prompt_hash(prompt.weights)}.png"

        def draw() -> None:
            from ..inspect_prompt import inspect_prompt
            from ..plots import plot_inspection

            with plot_lock:
                if not path.is_file():
                    plot_inspection(prompt, base, inspect_prompt(prompt, base), path)
                    trim_to(folders.cache, studio.max_cache_bytes, keep=path)

        await asyncio.to_thread(draw)
        return FileResponse(path, media_type="image/png")

    @router.delete("/api/cache")
    async def clear_cache() -> dict:
        def clear() -> int:
            with plot_lock:
                return trim_to(folders.cache, 0)

        return {"deleted_bytes": await asyncio.to_thread(clear)}

    @router.get("/api/prompts/{name}/download")
    async def download(name: str) -> Response:
        loaded(name)
        folder = (registry.folder / name).resolve()
        if not folder.is_relative_to(registry.root) or not folder.is_dir():
            raise APIError(404, f"no prompt folder for {name!r}", kind="not_found_error")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            for item in sorted(folder.iterdir()):
                if item.is_file() and not item.is_symlink() and not item.name.startswith("."):
                    z.write(item, f"{name}/{item.name}")
        headers = {"Content-Disposition": f'attachment; filename="{name}.zip"'}
        return Response(buffer.getvalue(), media_type="application/zip", headers=headers)

    @router.post("/api/uploads")
    async def upload(request: Request, filename: str = "") -> dict:
        try:
            saved = await uploads.save(filename, request.stream())
        except SoftPromptError as e:
            raise user_error(e) from None
        return saved.to_dict()

    @router.get("/api/uploads")
    async def list_uploads() -> dict:
        return {"data": await asyncio.to_thread(uploads.list)}

    @router.delete("/api/uploads/{upload_id}")
    async def delete_upload(upload_id: str) -> dict:
        user = in_use(lambda j: j.spec.get("data") == upload_id)
        if user is not None:
            raise APIError(409, f"job {user.id} ({user.state}) trains on this file; stop it before deleting the file")
        try:
            await asyncio.to_thread(uploads.delete, upload_id)
        except SoftPromptError as e:
            raise user_error(e) from None
        return {"deleted": upload_id}

    @router.post("/api/jobs", dependencies=[Depends(require_json)])
    async def start(request: Request) -> dict:
        try:
            raw = await request.json()
        except (ValueError, RecursionError):
            raise APIError(400, "the request body must be a JSON object") from None
        try:
            spec = JobSpec.from_dict(raw)
            with worded(form_label):
                studio.check_job(spec)
            if (folders.prompts / spec.name).exists() and not spec.overwrite:
                raise NameTaken(spec.name)
            _, data = await asyncio.to_thread(resolve, spec, uploads)  # data problems show up now
            job = jobs.submit(spec)
        except SoftPromptError as e:
            raise user_error(e) from None
        return {**_job(jobs, job), "train_examples": len(data.train), "dev_examples": len(data.dev)}

    @router.get("/api/jobs")
    async def list_jobs() -> dict:
        return {"data": [_job(jobs, job) for job in jobs.list()]}

    @router.get("/api/jobs/{job_id}")
    async def job_detail(job_id: str) -> dict:
        try:
            job = jobs.get(job_id)
        except SoftPromptError as e:
            raise APIError(404, str(e), kind="not_found_error") from None
        return {**_job(jobs, job), **_curves(job, jobs.metrics(job.id))}

    @router.post("/api/jobs/{job_id}/stop")
    async def stop(job_id: str) -> dict:
        try:
            return _job(jobs, jobs.stop(job_id))
        except SoftPromptError as e:
            raise user_error(e) from None

    @router.post("/api/jobs/{job_id}/resume")
    async def resume(job_id: str) -> dict:
        try:
            return _job(jobs, jobs.resume(job_id))
        except SoftPromptError as e:
            raise user_error(e) from None

    @router.delete("/api/jobs/{job_id}")
    async def delete_job(job_id: str) -> dict:
        try:
            await asyncio.to_thread(jobs.delete, job_id)
        except SoftPromptError as e:
            raise user_error(e) from None
        return {"deleted": job_id}

    return router


def _prompt_entry(info, prompt) -> dict:
    """One prompt as the page lists it; raises on metadata that cannot be shown (the caller lists it as broken)."""
    training = {} if prompt is None else prompt.meta.training
    if not isinstance(training, dict):
        raise ValueError(f"its metadata field 'training' is {type(training).__name__}, not an object")
    entry = {**dataclasses.asdict(info), "training": dict(training)}
    json.dumps(entry, allow_nan=False)  # what the response will do: fail here, for this prompt only
    return entry


def _remove_folder(folder: Path) -> None:
    """Rename the folder aside first (one atomic step for readers), then delete it."""
    aside = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".deleted", dir=folder.parent))
    folder.rename(aside / folder.name)
    shutil.rmtree(aside, ignore_errors=True)


def _classify_hard(base: LanguageModel, meta, template: str, text: str) -> dict[str, float]:
    """The prompt's own task with `template` in place of its template, scored with no soft prompt."""
    import torch

    from ..forward import pad_batch

    task = task_from_meta(dataclasses.replace(meta, template=template))
    batch = pad_batch([task.encode(base, text).ids], base.pad_token_id, side="left", device=base.device)
    with torch.no_grad():
        probs = task.label_scores(base, None, batch).float().softmax(-1)[0].tolist()
    return dict(zip(task.labels, probs))


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
        per_step = job.spec.get("batch_size", 1) / speed
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
