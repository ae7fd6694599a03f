"""The studio's model work, kept out of its routes (as serve/operations.py does for the API).

- `ClassifyHard`: a batcher operation (`serve.batcher.Operation`): the label
  probabilities of texts under a typed hard prompt, i.e. a prompt's own task
  with another template and no soft prompt. It runs on the batcher's worker
  thread, between serving batches.
- `draw_plot`: the inspect plot of a prompt into the studio's cache, once.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from ..prompts.meta import PromptMeta
from ..serve.batcher import Cancelled
from ..tasks import task_from_meta
from .storage import trim_to


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: each request's own call, never shared
class ClassifyHard:
    """{label: probability} per text, for the prompt task `meta` with `template` in place of its own."""

    meta: PromptMeta
    template: str

    def run(self, predictor, texts: list[str], cancelled: Cancelled) -> list[dict[str, float]]:
        import torch

        from ..forward import pad_batch

        base = predictor.base
        task = task_from_meta(dataclasses.replace(self.meta, template=self.template))
        batch = pad_batch(
            [task.encode(base, text).ids for text in texts], base.pad_token_id, side="left", device=base.device
        )
        with torch.no_grad():
            probs = task.label_scores(base, None, batch).float().softmax(-1).tolist()
        return [dict(zip(task.labels, row)) for row in probs]


def draw_plot(prompt, base, path: Path, *, lock: threading.Lock, cache: Path, max_cache_bytes: int) -> None:
    """The inspect plot of `prompt` at `path` (kept if there), the cache trimmed to its quota."""

    with lock:
        if not path.is_file():
            prompt.inspect(base).plot(prompt, base, path)
            trim_to(cache, max_cache_bytes, keep=path)
