"""The endpoints, one module per group, each an APIRouter using only `State` and the request.

Adding an endpoint: write a module here with `router = APIRouter()` and its
handlers (take `state: State`; run model work through `dispatch.answer` with
an operation from `operations.py`), then list its router below: `API` if it
needs the API key, `PUBLIC` if not (and add its path to guards.PUBLIC_PATHS).
"""

from __future__ import annotations

from . import chat, classify, completions, health, prompts

API = (classify.router, completions.router, chat.router, prompts.router)
PUBLIC = (health.router,)
