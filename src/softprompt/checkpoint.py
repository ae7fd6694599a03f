"""Training checkpoints as safetensors + JSON: no pickle anywhere.

A checkpoint folder holds `state.safetensors` (every tensor: the prompt, the
best prompt so far, the optimiser's per-parameter tensors) and `state.json`
(every number: step, data position, optimiser scalars and hyper-parameters,
schedule state, early-stopping state, the run's config). Written atomically,
so a crash mid-save leaves the previous checkpoint intact; the next save or
load cleans up after such a crash (fileio.recover_dir).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import SoftPromptError, describe_os_error
from .fileio import recover_dir, write_dir_atomic

TENSORS_FILE = "state.safetensors"
JSON_FILE = "state.json"
OPTIM_PREFIX = "optim."


@dataclass
class Checkpoint:
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    values: dict = field(default_factory=dict)


def _split_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """optimizer.state_dict() -> (tensors named optim.<param>.<key>, JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for index, per_param in state_dict["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{OPTIM_PREFIX}{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"scalars": scalars, "param_groups": state_dict["param_groups"]}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], values: dict) -> dict:
    state: dict[int, dict] = {}
    for index, per_param in values["scalars"].items():
        state.setdefault(int(index), {}).update(per_param)
    for name, tensor in tensors.items():
        if name.startswith(OPTIM_PREFIX):
            index, key = name[len(OPTIM_PREFIX) :].split(".", 1)
            state.setdefault(int(index), {})[key] = tensor
    return {"state": state, "param_groups": values["param_groups"]}


def optimization_state(
    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler
) -> tuple[dict[str, torch.Tensor], dict]:
    """The optimiser's and schedule's state as (tensors, values) to merge into a Checkpoint.

    Every trainer that checkpoints (the prompt trainer, compare's LoRA and full
    fine-tuning loop) saves these the same way, so they resume the same way.
    """
    tensors, values = _split_optimizer_state(optimizer.state_dict())
    return tensors, {"optimizer": values, "scheduler": scheduler.state_dict()}  # LambdaLR: numbers only


def restore_optimization(
    optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler, checkpoint: Checkpoint
) -> None:
    """Load what `optimization_state` saved into `optimizer` and `scheduler`."""
    optimizer.load_state_dict(_join_optimizer_state(checkpoint.tensors, checkpoint.values["optimizer"]))
    scheduler.load_state_dict(checkpoint.values["scheduler"])


def save_checkpoint(folder: str | Path, checkpoint: Checkpoint) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in checkpoint.tensors.items()}
    text = json.dumps(checkpoint.values, indent=2, sort_keys=True) + "\n"

    def fill(tmp: Path) -> None:
        save_file(tensors, str(tmp / TENSORS_FILE))
        (tmp / JSON_FILE).write_text(text, encoding="utf-8")

    recover_dir(folder)  # a crash during an earlier save left temporary folders beside it
    write_dir_atomic(folder, fill)


def read_values(folder: str | Path) -> dict:
    """The checkpoint's numbers only (no tensors): cheap, e.g. to say which step it holds."""
    return json.loads((Path(folder) / JSON_FILE).read_text(encoding="utf-8"))


def has_checkpoint(folder: str | Path) -> bool:
    """Whether `folder` holds a checkpoint to resume from (after undoing what a crash mid-save left)."""
    folder = Path(folder)
    recover_dir(folder)
    return (folder / JSON_FILE).is_file() and (folder / TENSORS_FILE).is_file()


def load_checkpoint(folder: str | Path) -> Checkpoint:
    folder = Path(folder)
    recover_dir(folder)  # a crash between the renames of a save left the checkpoint in a temporary folder
    if not (folder / JSON_FILE).is_file() or not (folder / TENSORS_FILE).is_file():
        raise SoftPromptError(f"no checkpoint in {folder} to resume from (expected {JSON_FILE} and {TENSORS_FILE})")
    try:
        values = read_values(folder)
        tensors = load_file(str(folder / TENSORS_FILE))
    except (json.JSONDecodeError, UnicodeDecodeError, SafetensorError) as e:
        raise SoftPromptError(f"{folder}: the checkpoint is corrupt ({e}); start again without --resume") from e
    except OSError as e:
        raise SoftPromptError(f"cannot read the checkpoint: {describe_os_error(e)}") from e
    return Checkpoint(tensors, values)
