"""The studio: the serve app plus a page and its API under /studio.

`create_studio_app(predictor, registry, base, data_dir)` builds the ordinary
serving app (`serve.app.create_app`, so /v1/* works as usual and the page
uses /v1/classify and streamed /v1/completions to try prompts) and adds:

    GET    /studio/                        the page (static files, no CDN; carries the request token)
    GET    /studio/api/info                model, built-in datasets, defaults, caps
    GET    /studio/api/schema              the form's training settings (runner.form_schema: TrainConfig's declarations)
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

The handlers live in `routes/` (one module per concern) and take the app's
`state.StudioState`; model work for the page goes through `operations.py`.
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
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from ..errors import SoftPromptError
from ..models import BaseModel as LanguageModel
from ..serve.app import create_app
from ..serve.config import ServeSettings
from ..serve.registry import PromptRegistry
from .guard import RequestGuard
from .jobs import Job, JobQueue
from .routes import ROUTERS
from .runner import publish, train_job
from .settings import StudioSettings
from .state import StudioState
from .storage import DataFolder
from .uploads import UploadStore

STATIC = Path(__file__).parent / "static"
TOKEN_SLOT = "{{studio_token}}"  # in index.html, filled per process
BODY_MARGIN = 64 * 1024  # request size allowance beyond the upload limit


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
    page_html = (STATIC / "index.html").read_text(encoding="utf-8").replace(TOKEN_SLOT, guard.token)
    app.state.studio = StudioState(
        predictor, registry, base, folders, uploads, jobs, studio, app.state.batcher, page_html
    )
    app.state.jobs, app.state.uploads, app.state.studio_token = jobs, uploads, guard.token
    _close_jobs_on_shutdown(app, jobs)
    for router in ROUTERS:
        app.include_router(router, prefix="/studio", include_in_schema=False, dependencies=[Depends(guard)])
    app.add_api_route("/", _to_studio, include_in_schema=False)
    app.mount("/studio/static", StaticFiles(directory=STATIC), name="studio-static")
    return app


async def _to_studio() -> RedirectResponse:
    return RedirectResponse("/studio/")


def _close_jobs_on_shutdown(app: FastAPI, jobs: JobQueue) -> None:
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(a):
        async with inner(a) as state:
            yield state
        # The running job stops at its next step with a checkpoint: it reads as stopped, resumable.
        await asyncio.to_thread(jobs.close)

    app.router.lifespan_context = lifespan
