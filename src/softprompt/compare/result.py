"""One method's measured figures: what is saved per method (JSON) and what the report reads."""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SoftPromptError
from ..fileio import write_json_atomic
from .config import TITLES, CompareConfig

if TYPE_CHECKING:
    from .measure import Scored


@dataclass
class MethodResult:
    method: str  # zero-shot | few-shot | prompt-tuning | lora | full-finetune
    title: str
    trainable_parameters: int
    total_parameters: int  # of the model as used (base + adapter)
    storage_bytes: int  # bytes of the task-specific files a user keeps per task
    storage: str  # which files those are
    train_seconds: float  # 0 for hard prompts
    steps: int
    examples_seen: int  # labelled examples the method consumed (training + in-context)
    peak_memory_bytes: int  # peak memory growth while the method ran (see measure.py)
    training_state_bytes: int  # trained params + grads + optimiser state
    test: dict  # accuracy, macro_f1, n, ...
    eval_seconds: float
    forgetting: dict = field(default_factory=dict)  # perplexity / second task after; weights_unchanged
    interpretability: str = ""
    details: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)  # CompareConfig.fingerprint() it was measured under

    @classmethod
    def scored(cls, method: str, config: CompareConfig, scored: Scored, **figures) -> MethodResult:
        """A trained method's result: `figures` are the fields that differ between methods."""
        return cls(
            method=method,
            title=TITLES[method],
            test=scored.test,
            eval_seconds=scored.eval_seconds,
            peak_memory_bytes=scored.peak_memory_bytes,
            config=config.fingerprint(),
            **figures,
        )

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, asdict(self))

    @classmethod
    def load(cls, path: str | Path) -> MethodResult:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise SoftPromptError(f"{path}: cannot read this saved result ({e}); delete it to measure again") from e
        known = {f.name for f in fields(cls)}
        missing = [
            f.name for f in fields(cls) if f.name not in raw and f.default is MISSING and f.default_factory is MISSING
        ]
        if missing:
            raise SoftPromptError(f"{path}: saved result lacks {', '.join(missing)}; delete it to measure again")
        return cls(**{k: v for k, v in raw.items() if k in known})
