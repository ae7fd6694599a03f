"""The prompt folder, readable by Hugging Face PEFT as a prompt-learning adapter.

    adapter_config.json          PEFT's config fields (PromptTuningConfig, PrefixTuningConfig, ...)
    adapter_model.safetensors    one tensor `prompt_embeddings` [T, width], fp32;
                                 its metadata key "softprompt" holds our JSON
                                 (task, template, verbalizer, base model
                                 fingerprint and quantisation, training figures)
    initial_embeddings.safetensors  (optional) the prompt before training, so
                                 `inspect` can say how far each token moved

The metadata lives in the same file as the tensor so they can never disagree.
Only safetensors and JSON are read: never a pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import PromptFileError, describe_os_error
from ..fileio import write_dir_atomic
from ..model_names import resolvable_name
from .meta import PromptMeta

if TYPE_CHECKING:
    from ..models import BaseModel

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
INITIAL_FILE = "initial_embeddings.safetensors"
TENSOR_NAME = "prompt_embeddings"
METADATA_KEY = "softprompt"


def write_folder(
    folder: Path, config: dict, weights: torch.Tensor, meta: PromptMeta, initial: torch.Tensor | None
) -> Path:
    """Write a prompt folder atomically: the PEFT config, the weights with our metadata, the initial weights."""
    weights = weights.detach().cpu().contiguous()
    metadata = {"format": "pt", METADATA_KEY: meta.to_json()}

    def fill(tmp: Path) -> None:
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_file({TENSOR_NAME: weights}, str(tmp / WEIGHTS_FILE), metadata=metadata)
        if initial is not None:
            save_file({TENSOR_NAME: initial.cpu().contiguous()}, str(tmp / INITIAL_FILE))

    write_dir_atomic(folder, fill)
    return folder


def read_folder(folder: Path, accept: tuple[str, ...]) -> tuple[dict, torch.Tensor, PromptMeta, torch.Tensor | None]:
    """A prompt folder of one of the `accept` PEFT types: its config, [T, width] weights, metadata, initial weights."""
    config = read_peft_config(folder, accept=accept)
    weights_path = folder / WEIGHTS_FILE
    tensor, meta_text = _read_tensor(weights_path, want_metadata=True)
    if tensor.dim() != 2:
        raise PromptFileError(f"{weights_path}: '{TENSOR_NAME}' should be [T, d], got shape {tuple(tensor.shape)}")
    meta = PromptMeta.from_json(meta_text, where=str(weights_path)) if meta_text else _meta_from_peft(config)
    initial = None
    if (folder / INITIAL_FILE).is_file():
        initial, _ = _read_tensor(folder / INITIAL_FILE, want_metadata=False)
    return config, tensor, meta, initial


def peft_common(base_model: str | None, num_virtual_tokens: int, base: BaseModel | None, peft_type: str) -> dict:
    """The config fields every PEFT prompt-learning adapter has."""
    return {
        "auto_mapping": None,
        # PEFT's loaders (AutoPeftModelForCausalLM) load this name: a built-in alias becomes its hub id,
        # while our metadata keeps the alias (model_names.py).
        "base_model_name_or_path": resolvable_name(base_model),
        "inference_mode": True,
        "modules_to_save": None,
        "num_virtual_tokens": num_virtual_tokens,
        "peft_type": peft_type,
        "revision": None,
        "task_type": "SEQ_2_SEQ_LM" if base is not None and base.is_seq2seq else "CAUSAL_LM",
    }


def read_peft_config(folder: Path, accept: tuple[str, ...]) -> dict:
    """adapter_config.json of a prompt folder whose peft_type is one of `accept`."""
    config = _read_config(folder)
    kind = config.get("peft_type")
    if kind not in accept:
        wanted = " or ".join(a.lower().replace("_", "-") for a in accept)
        raise PromptFileError(
            f"{folder / CONFIG_FILE}: peft_type is {kind!r}; only {wanted} adapters are supported here "
            f"({', '.join(accept)})"
        )
    return config


def peft_type_of(folder: Path) -> str | None:
    """The peft_type a prompt folder declares (the folder and its config must exist and be JSON)."""
    return _read_config(folder).get("peft_type")


def _read_config(folder: Path) -> dict:
    if not folder.is_dir():
        raise PromptFileError(f"prompt folder '{folder}' does not exist")
    path = folder / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise PromptFileError(f"'{folder}' is not a prompt folder: {CONFIG_FILE} is missing") from e
    except OSError as e:  # a directory in its place, no permission, ...
        raise PromptFileError(f"{path}: cannot be read ({e.strerror or e})") from e
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise PromptFileError(f"{path}: not valid JSON ({e}); the file is corrupt") from e
    if not isinstance(config, dict):
        raise PromptFileError(f"{path}: not a JSON object; the file is corrupt")
    t = config.get("num_virtual_tokens")
    if t is not None and (not isinstance(t, int) or isinstance(t, bool) or t < 1):
        raise PromptFileError(f"{path}: num_virtual_tokens should be a whole number >= 1, got {str(t)[:40]!r}")
    return config


def _read_tensor(path: Path, *, want_metadata: bool) -> tuple[torch.Tensor, str | None]:
    if path.is_dir():
        raise PromptFileError(f"{path}: a folder, not a safetensors file; the prompt folder is damaged: save it again")
    if not path.is_file():
        raise PromptFileError(f"{path} is missing")
    try:  # safetensors reports a file it may not read as "No such file"; open() says what is wrong
        open(path, "rb").close()
    except OSError as e:
        raise PromptFileError(f"cannot read the prompt: {describe_os_error(e)}") from e
    try:
        with safe_open(str(path), framework="pt") as f:
            if TENSOR_NAME not in f.keys():
                raise PromptFileError(
                    f"{path}: no tensor named '{TENSOR_NAME}' (found: {', '.join(f.keys()) or 'none'})"
                )
            tensor = f.get_tensor(TENSOR_NAME)
            meta = (f.metadata() or {}).get(METADATA_KEY) if want_metadata else None
    except SafetensorError as e:
        raise PromptFileError(f"{path}: not a readable safetensors file ({e}); it is corrupt or truncated") from e
    except OSError as e:
        raise PromptFileError(f"{path}: cannot be read ({e.strerror or e})") from e
    if not tensor.is_floating_point():
        raise PromptFileError(
            f"{path}: '{TENSOR_NAME}' holds {str(tensor.dtype).removeprefix('torch.')} values, but a prompt is "
            "floating point; the file is corrupt or not a prompt"
        )
    if not torch.isfinite(tensor).all():
        raise PromptFileError(f"{path}: the prompt holds NaN or infinite values")
    return tensor.to(torch.float32), meta


def _meta_from_peft(config: dict) -> PromptMeta:
    # A field of another type than PEFT writes is ignored (None), not carried into messages and new files.
    text = lambda key: config.get(key) if isinstance(config.get(key), str) else None  # noqa: E731
    init = text("prompt_tuning_init")
    if init == "TEXT":
        init = f"text:{text('prompt_tuning_init_text') or ''}"
    return PromptMeta(base_model=text("base_model_name_or_path"), init=(init or "").lower() or None)
