"""ServeState: what every endpoint works with, one per app, reached through the `State` dependency.

Endpoints declare `state: State` and FastAPI hands them the app's ServeState
(`app.state.serve`): no closures over create_app's locals, so an endpoint
module needs nothing but this and the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request

from ..models import BaseModel
from .batcher import Batcher
from .config import ServeSettings
from .metrics import ServeMetrics
from .registry import PromptRegistry


@dataclass
class ServeState:
    predictor: Any  # an infer.Predictor or a look-alike (tests wrap it)
    registry: PromptRegistry
    settings: ServeSettings
    batcher: Batcher
    metrics: ServeMetrics
    draining: bool = False  # set when shutdown begins: /health says so

    @property
    def base(self) -> BaseModel | None:
        """The base model whose tokenizer counts tokens (None: a look-alike predictor without one)."""
        return self.registry.base or getattr(self.predictor, "base", None)

    @property
    def base_id(self) -> str:
        """The base model's id in the API (`model` for no prompt): its name, or a local folder's last part."""
        name = getattr(self.base, "name", None) or "base"
        return Path(name).name if Path(name).exists() else name

    def count_tokens(self, text: str) -> int | None:
        return None if self.base is None else len(self.base.encode(text))


def serve_state(request: Request) -> ServeState:
    return request.app.state.serve


State = Annotated[ServeState, Depends(serve_state)]
