"""A quantised model's weights in one safetensors file: no pickle, written atomically.

Each distinct quantised matrix is saved once, in its portable form (int8: the
table and row scales; int4: row-major 4-bit pairs, scales and zeros), under
its first module name; the other parameters and buffers as they are. A tied
LM head is not written again: the skeleton ties it to the embedding's matrix
(as transformers ties the plain model), and the file's metadata records
which names share storage so a loader that ties otherwise is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..errors import SoftPromptError
from ..fileio import atomic_path
from .config import Quantization
from .matrix import QuantizedMatrix
from .model import load_tensor_, quantization_of, quantized_modules, quantized_skeleton

WEIGHTS_FILE = "quantized.safetensors"


def _shared_names(model: nn.Module) -> dict[str, list[str]]:
    """First name of each quantised matrix -> every other module name it is also held under."""
    firsts = {id(m): name for name, m in quantized_modules(model)}
    aliases: dict[str, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, QuantizedMatrix) and firsts[id(module)] != name:
            aliases.setdefault(firsts[id(module)], []).append(name)
    return aliases


def _plain_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers outside the quantised matrices, each storage once."""
    state, seen = {}, set()
    for name, tensor in model.state_dict().items():
        if ".matrix." in f".{name}":
            continue
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:
            continue
        seen.add(key)
        state[name] = tensor.detach().contiguous()
    return state


def save_quantized(model: nn.Module, folder: Path) -> None:
    """Write `folder`/quantized.safetensors (the Quantization and the tying in its metadata)."""
    from safetensors.torch import save_file

    q = quantization_of(model)
    if not q.enabled:
        raise SoftPromptError("save_quantized needs a quantised model (quantize_model first)")
    tensors = _plain_state(model)
    for name, matrix in quantized_modules(model):
        for key, value in matrix.portable().items():
            tensors[f"{name}.{key}"] = value.detach().to("cpu").contiguous()
    metadata = {"quantization": json.dumps(q.to_dict()), "shared": json.dumps(_shared_names(model), sort_keys=True)}
    with atomic_path(Path(folder) / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_quantized(folder: Path, config, q: Quantization, *, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The model of `config` with the weights of `folder`/quantized.safetensors, quantised as `q` says."""
    from safetensors import safe_open

    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise SoftPromptError(f"{path} does not exist: the folder holds no quantised model")
    model = quantized_skeleton(config, q, dtype=dtype)
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        saved = Quantization.from_dict(json.loads(metadata.get("quantization", "{}") or "{}"))
        if saved != q:
            raise SoftPromptError(f"{path} holds a model quantised as {saved}, not {q}; quantise it again")
        if json.loads(metadata.get("shared", "{}")) != _shared_names(model):
            raise SoftPromptError(f"{path}: its tied weights do not match the model's configuration")
        names = set(f.keys())
        for name, matrix in quantized_modules(model):
            keys = [k for k in names if k.rpartition(".")[0] == name]
            matrix.load_portable_({k.rpartition(".")[2]: f.get_tensor(k) for k in keys})
            names -= set(keys)
        for name in sorted(names):
            load_tensor_(model, name, f.get_tensor(name), q)
    missing = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if missing:
        raise SoftPromptError(f"{path} lacks {len(missing)} tensor(s) the model needs, e.g. {missing[0]!r}")
    return model.eval()
