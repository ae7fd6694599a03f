"""The studio's endpoints under /studio, one module per concern, each an APIRouter using only `Studio` and the request.

Adding an endpoint: write its handler in the module of its concern (or a new
module here with `router = APIRouter()`), take `state: Studio`
(studio/state.py), run model work through the batcher with an operation
(studio/operations.py, serve/operations.py), and list a new router below.
app.py mounts them all under /studio behind the request guard.
"""

from __future__ import annotations

from . import hard, info, jobs, page, prompts, uploads

ROUTERS = (page.router, info.router, prompts.router, hard.router, uploads.router, jobs.router)
