"""Progress on stderr (tqdm: step, loss, dev metric, examples/s, time left) and the metrics log.

The metrics log is JSON Lines beside the prompt: one object per optimiser step
(loss, lr, grad norm, examples/s) and one per dev evaluation. On resume, lines
written after the checkpoint's step are dropped, so the log reads as if the
run had never stopped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


class Progress:
    """A tqdm bar over optimiser steps; silent when disabled (tests, --quiet)."""

    def __init__(self, total: int, initial: int = 0, *, enabled: bool = True, desc: str = "train"):
        from tqdm import tqdm

        self.bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit="step",
            file=sys.stderr,
            disable=not enabled,
            dynamic_ncols=True,
        )
        self.fields: dict[str, str] = {}

    def update(self, steps: int = 1, **fields: str) -> None:
        self.fields.update(fields)
        self.bar.set_postfix(self.fields, refresh=False)
        self.bar.update(steps)

    def note(self, **fields: str) -> None:
        self.fields.update(fields)
        self.bar.set_postfix(self.fields)

    def write(self, message: str) -> None:
        self.bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


class MetricsLog:
    """Append-only JSON Lines file of training figures."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records of steps after `step` (they will be written again by the resumed run)."""
        if not self.path.is_file():
            return
        keep = [line for line in self.path.read_text(encoding="utf-8").splitlines() if _step(line) <= step]
        self.path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")

    def records(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return 0
