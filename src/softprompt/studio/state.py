"""StudioState: what every studio endpoint works with, one per app, reached through the `Studio` dependency.

As serve/state.py does for the API: handlers declare `state: Studio` and
FastAPI hands them the app's StudioState (`app.state.studio`), so a route
module needs nothing but this and the request, and no handler closes over
create_studio_app's locals.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from ..errors import FieldError, SoftPromptError
from ..models import BaseModel
from ..serve.app import APIError
from ..serve.batcher import Batcher
from ..serve.registry import PromptRegistry, name_problem
from .jobs import Job, JobQueue
from .settings import StudioSettings
from .storage import DataFolder
from .uploads import UploadStore


@dataclass
class StudioState:
    predictor: Any  # the serving app's infer.Predictor
    registry: PromptRegistry
    base: BaseModel
    folders: DataFolder
    uploads: UploadStore
    jobs: JobQueue
    limits: StudioSettings
    batcher: Batcher
    page_html: str  # index.html with this process's token
    plot_lock: threading.Lock = field(default_factory=threading.Lock)  # matplotlib's pyplot is not thread-safe

    def loaded(self, name: str):
        """The served prompt `name`, or a 404."""
        prompt = None if name_problem(name) else self.predictor.prompts.get(name)
        if prompt is None:
            raise APIError(404, f"no prompt named {name[:80]!r}", kind="not_found_error")
        return prompt

    def active_job(self, check) -> Job | None:
        """A queued or running job for which `check(job)` holds."""
        return next((j for j in self.jobs.list() if j.state in ("queued", "running") and check(j)), None)


def user_error(e: SoftPromptError) -> APIError:
    """A user mistake as the page's error: 422 unless the error says otherwise; a setting's name as `param`."""
    return APIError(getattr(e, "status", 422), str(e), param=e.field if isinstance(e, FieldError) else None)


@contextmanager
def user_errors() -> Iterator[None]:
    """A user mistake raised inside the block answers as the page's error (`user_error`)."""
    try:
        yield
    except SoftPromptError as e:
        raise user_error(e) from None


def studio_state(request: Request) -> StudioState:
    return request.app.state.studio


Studio = Annotated[StudioState, Depends(studio_state)]
