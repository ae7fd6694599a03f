"""Prompt tuning through the same run set-up as `softprompt train` (`recipe.run_training`), on the comparison's budget."""

from __future__ import annotations

from pathlib import Path

import torch

from ..evaluate import EvalSet, evaluate
from ..inspect_prompt import inspect_prompt
from ..models import BaseModel
from ..optim import build_optimizer
from ..progress import MetricsLog
from ..prompt import CONFIG_FILE, WEIGHTS_FILE, SoftPrompt
from ..recipe import RunData, RunSpec, build_config, run_training
from ..train import METRICS_FILE
from .config import CompareConfig
from .measure import files_bytes, parameter_counts, tensor_bytes, train_and_score
from .result import MethodResult
from .task_data import TaskData


def run_spec(config: CompareConfig) -> RunSpec:
    """softprompt's own training defaults (class-label init, schedule) on the shared budget; no dev evaluation."""
    settings = {
        "num_virtual_tokens": config.num_virtual_tokens,
        "optimizer": config.prompt_optimizer,
        "lr": config.prompt_lr,
        "batch_size": config.batch_size,
        "steps": config.steps,
        "checkpoint_every": config.steps,
        "seed": config.seed,
    }
    return RunSpec(data=config.data, max_dev_examples=0, settings=settings)


def optimizer_state_bytes(name: str, shape: tuple[int, ...], lr: float) -> int:
    """Bytes of optimiser state for one parameter of `shape`, measured on a stand-in after one step."""
    param = torch.nn.Parameter(torch.zeros(shape))
    optimizer = build_optimizer([param], name, lr)
    param.grad = torch.ones(shape)
    optimizer.step()
    return tensor_bytes(v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor))


def run_prompt_tuning(
    base: BaseModel,
    data: TaskData,
    test_rows: EvalSet,
    config: CompareConfig,
    folder: str | Path,
    *,
    show_progress: bool = True,
    log=print,
) -> tuple[MethodResult, SoftPrompt]:
    folder = Path(folder)
    spec = run_spec(config)
    split = RunData(data.task, data.train, (), data.test, data.name, data.max_input_tokens)
    tc = build_config(spec, split)
    log(f"prompt-tuning: {config.steps} steps of {config.batch_size}, T={config.num_virtual_tokens}")

    def tune():
        trained = run_training(spec, folder, base, data=split, show_progress=show_progress)
        if trained.status == "interrupted":  # the trainer stops cleanly on Ctrl-C; a partial run is no result
            raise KeyboardInterrupt
        return trained

    trained, scored = train_and_score(
        base.device,
        tune,
        lambda t: evaluate(base, data.task, t.prompt.embeddings, test_rows.rows, batch_size=config.eval_batch_size),
    )
    prompt = trained.prompt
    inspection = inspect_prompt(prompt, base)
    params = prompt.embeddings.numel()
    _, total = parameter_counts(base.model)
    losses = [r["loss"] for r in MetricsLog(folder / METRICS_FILE).records() if "loss" in r]
    result = MethodResult.scored(
        "prompt-tuning",
        config,
        scored,
        trainable_parameters=params,
        total_parameters=total + params,
        storage_bytes=files_bytes(folder, [CONFIG_FILE, WEIGHTS_FILE]),
        storage=f"prompt folder: {CONFIG_FILE} + {WEIGHTS_FILE}",
        train_seconds=trained.wall_time_s,
        steps=trained.steps,
        examples_seen=trained.examples_seen,
        training_state_bytes=2 * tensor_bytes([prompt.embeddings])
        + optimizer_state_bytes(tc.optimizer, tuple(prompt.embeddings.shape), tc.learning_rate),
        interpretability=inspection.summary,
        details={
            "losses": losses,
            "optimizer": tc.optimizer,
            "lr": tc.learning_rate,
            "schedule": tc.schedule,
            "init": tc.init,
            "num_virtual_tokens": tc.num_virtual_tokens,
            "folder": str(folder),
            "nearest_tokens": [[n.token for n in tok.neighbours[:3]] for tok in inspection.tokens],
        },
    )
    return result, prompt
