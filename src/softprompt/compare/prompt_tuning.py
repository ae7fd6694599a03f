"""softprompt's prompt methods (prompt tuning, prefix tuning, P-tuning) through the same run set-up as
`softprompt train` (`recipe.run_training`), on the comparison's budget."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..evaluate import EvalSet, evaluate
from ..models import BaseModel
from ..optim import build_optimizer
from ..progress import MetricsLog
from ..prompts.base import BasePrompt
from ..prompts.files import CONFIG_FILE, WEIGHTS_FILE
from ..recipe import RunData, RunSpec, build_config, run_training
from ..train import METRICS_FILE
from .config import CompareConfig
from .measure import files_bytes, parameter_counts, tensor_bytes, train_and_score
from .result import MethodResult
from .task_data import TaskData


def run_spec(config: CompareConfig, method: str = "prompt-tuning") -> RunSpec:
    """The method at its own recipe (T, LR, optimiser: `softprompt train`'s defaults for it) unless a compare flag
    set one for all, on the shared budget; no dev evaluation."""
    settings = {
        **config.method_settings(method),
        "batch_size": config.batch_size,
        "steps": config.steps,
        "checkpoint_every": config.steps,
        "seed": config.seed,
    }
    return RunSpec(data=config.data, max_dev_examples=0, settings=settings)


def optimizer_state_bytes(name: str, shapes: Sequence[tuple[int, ...]], lr: float) -> int:
    """Bytes of optimiser state for parameters of `shapes`, measured on stand-ins after one step."""
    params = [torch.nn.Parameter(torch.zeros(shape)) for shape in shapes]
    optimizer = build_optimizer(params, name, lr)
    for param in params:
        param.grad = torch.ones(param.shape)
    optimizer.step()
    return tensor_bytes(v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor))


def run_prompt_tuning(
    base: BaseModel,
    data: TaskData,
    test_rows: EvalSet,
    config: CompareConfig,
    folder: str | Path,
    *,
    method: str = "prompt-tuning",
    show_progress: bool = True,
    log=print,
) -> tuple[MethodResult, BasePrompt]:
    """One of PROMPT_METHODS trained and scored; the trained parameters count a reparam network's too."""
    folder = Path(folder)
    spec = run_spec(config, method)
    split = RunData(data.task, data.train, (), data.test, data.name, data.max_input_tokens)
    tc = build_config(spec, split)
    log(f"{method}: {config.steps} steps: {tc.summary()}")

    def tune():
        trained = run_training(spec, folder, base, data=split, show_progress=show_progress)
        if trained.status == "interrupted":  # the trainer stops cleanly on Ctrl-C; a partial run is no result
            raise KeyboardInterrupt
        return trained

    trained, scored = train_and_score(
        base.device,
        tune,
        lambda t: evaluate(
            base, data.task, t.prompt, test_rows.rows, batch_size=config.eval_batch_size, keep_predictions=True
        ),
    )
    prompt = trained.prompt
    inspection = prompt.inspect(base)
    params = trained.trainable_parameters
    _, total = parameter_counts(base.model)
    losses = [r["loss"] for r in MetricsLog(folder / METRICS_FILE).records() if "loss" in r]
    result = MethodResult.scored(
        method,
        config,
        scored,
        trainable_parameters=params,
        total_parameters=total + prompt.num_parameters,  # what serves: the folded prompt
        storage_bytes=files_bytes(folder, [CONFIG_FILE, WEIGHTS_FILE]),
        storage=f"{prompt.PEFT_TYPE} folder: {CONFIG_FILE} + {WEIGHTS_FILE}",
        train_seconds=trained.wall_time_s,
        steps=trained.steps,
        examples_seen=trained.examples_seen,
        training_state_bytes=2 * 4 * params
        + optimizer_state_bytes(tc.optimizer, trained.training_shapes, tc.learning_rate),
        interpretability=inspection.summary,
        details={
            "losses": losses,
            "optimizer": tc.optimizer,
            "lr": tc.learning_rate,
            "schedule": tc.schedule,
            "init": tc.init,
            "num_virtual_tokens": tc.num_virtual_tokens,
            "balance": tc.balance,
            "settings": tc.summary(),
            "prompt_method": tc.method,
            "reparam": tc.reparam,
            "stored_parameters": prompt.num_parameters,
            "folder": str(folder),
            # A deep prompt's keys/values are not embeddings: no nearest tokens (inspect shows its layers).
            "nearest_tokens": inspection.nearest_tokens(3),
        },
    )
    return result, prompt
