"""Run a comparison: every selected method on the same task and budget, then the report.

Each finished method's figures are written atomically to `OUT/methods/<method>.json`
(and the base model's forgetting figures to `OUT/forgetting-before.json`), so an
interrupted comparison run again with `resume=True` skips what is done. A saved
result is reused only if it was measured under the same settings.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import SoftPromptError
from ..evaluate import encode_eval_set
from ..fileio import write_json_atomic
from ..models import BaseModel, load_base_model
from ..train import encode_examples
from . import forgetting
from .baselines import run_hard_prompt
from .config import PROMPT_METHODS, CompareConfig
from .finetune import run_finetune
from .measure import parameter_counts
from .prompt_tuning import run_prompt_tuning
from .report import build_report, write_report
from .result import MethodResult
from .task_data import load_task_data

METHODS_DIR = "methods"
BEFORE_FILE = "forgetting-before.json"


def result_path(out: Path, method: str) -> Path:
    return out / METHODS_DIR / f"{method}.json"


def stderr_logger(start: float) -> Callable[[str], None]:
    def log(message: str) -> None:
        elapsed = time.perf_counter() - start
        print(f"[compare {int(elapsed // 60):02d}:{int(elapsed % 60):02d}] {message}", file=sys.stderr, flush=True)

    return log


def load_saved(out: Path, config: CompareConfig) -> dict[str, MethodResult]:
    """Finished methods from an earlier run; refuses results measured under other settings."""
    saved = {}
    for method in config.runnable_methods:
        path = result_path(out, method)
        if path.is_file():
            result = MethodResult.load(path)
            diffs = config.differences(result.config)
            if diffs:
                raise SoftPromptError(
                    f"{path} was measured with other settings ({'; '.join(diffs)}); "
                    "run again with the same settings, or without --resume to measure everything anew"
                )
            saved[method] = result
    return saved


def _load_before(out: Path, config: CompareConfig) -> dict | None:
    path = out / BEFORE_FILE
    if not path.is_file():
        return None
    raw = json.loads(path.read_text(encoding="utf-8"))
    return raw["figures"] if not config.differences(raw.get("config", {})) else None


def run_compare(
    config: CompareConfig,
    out: str | Path,
    *,
    resume: bool = False,
    show_progress: bool = True,
    base: BaseModel | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Measure every method in `config.methods` (but those `config.refused`), write report.{json,md} and charts
    into `out`; return the report."""
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = log or stderr_logger(start)
    saved = load_saved(out, config) if resume else {}
    if saved:
        log(f"resuming: {', '.join(saved)} already measured in {out / METHODS_DIR}")
    if base is None:
        log(f"loading {config.model}")
        base = load_base_model(config.model, device=config.device, quantize=config.quantize)
    for sentence in config.refused.values():
        log(sentence)
    data = load_task_data(config)
    log(f"task {data.name}: {len(data.train):,} training examples, {len(data.test)} test examples")

    before = _load_before(out, config) if resume else None
    if before is None:
        log("measuring the base model before any adaptation")
        before = forgetting.measure(base, config, log=log)
        write_json_atomic(out / BEFORE_FILE, {"config": config.fingerprint(), "figures": before})

    digest = forgetting.weights_digest(base.model)
    test_rows = encode_eval_set(base, data.task, data.test, max_tokens=data.max_input_tokens)
    train_rows = None
    results = []
    methods = config.runnable_methods
    for i, method in enumerate(methods, start=1):
        if method in saved:
            log(f"[{i}/{len(methods)}] {method}: done in an earlier run, skipped")
            results.append(saved[method])
            continue
        log(f"[{i}/{len(methods)}] {method}")
        folder = out / method
        after = None
        if method in ("zero-shot", "few-shot"):
            result, _ = run_hard_prompt(method, base, data, config, log=log)
        else:
            if method in PROMPT_METHODS:
                result, _ = run_prompt_tuning(
                    base, data, test_rows, config, folder, method=method, show_progress=show_progress, log=log
                )
            else:
                if train_rows is None:
                    train_rows, _ = encode_examples(base, data.task, data.train, max_tokens=data.max_input_tokens)
                result, model = run_finetune(
                    method, base, data, train_rows, test_rows, config, folder, show_progress=show_progress, log=log
                )
                after = forgetting.measure(model, config, log=log)
                del model
                if method == "full-finetune" and not config.keep_weights:
                    _remove_weights(folder / "model")
        # Every method must leave the shared base model alone (LoRA and full fine-tuning train a copy).
        if forgetting.weights_digest(base.model) != digest:
            raise RuntimeError(f"{method} changed the frozen base model's weights: this is a bug in softprompt")
        result.forgetting = forgetting.compare_before_after(before, before if after is None else after)
        result.forgetting.update(weights_unchanged=after is None, measured_after=after is not None)
        result.save(result_path(out, method))
        acc = result.test["accuracy"]
        log(f"{method}: test accuracy {acc:.1%}, train {result.train_seconds:.0f} s; saved {result_path(out, method)}")
        results.append(result)

    model_info = {"name": config.model, "parameters": parameter_counts(base.model)[1], "hidden_size": base.hidden_size}
    report = build_report(config, data, model_info, before, results, time.perf_counter() - start)
    paths = write_report(report, out)
    log("wrote " + ", ".join(str(p) for p in paths))
    return report


def _remove_weights(folder: Path) -> None:
    # Hundreds of MB per run: measured, then removed unless the user asked to keep them.
    for item in folder.iterdir():
        item.unlink()
    folder.rmdir()
