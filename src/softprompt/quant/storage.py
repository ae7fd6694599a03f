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
import struct
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..errors import SoftPromptError
from ..fileio import atomic_path
from .config import Quantization
from .matrix import QuantizedMatrix
from .model import load_tensor_, quantization_of, quantized_modules, quantized_skeleton

WEIGHTS_FILE = "quantized.safetensors"
# safetensors' dtype names -> torch dtypes (the ones a quantised model's file holds).
_DTYPES = {
    "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
    "I8": torch.int8, "U8": torch.uint8, "I16": torch.int16, "I32": torch.int32, "I64": torch.int64,
    "BOOL": torch.bool,
}  # fmt: skip


def _read_header(f) -> tuple[dict, int]:
    """(the safetensors JSON header, the offset where the data starts)."""
    (length,) = struct.unpack("<Q", f.read(8))
    return json.loads(f.read(length)), 8 + length


def _read_tensors(path: Path) -> tuple[dict[str, str], Iterator[tuple[str, torch.Tensor]]]:
    """(metadata, (name, tensor) one at a time) read with plain file reads into fresh tensors.

    Not `safe_open`: it maps the whole file, and every page a tensor was copied from stays
    resident (counted in the process's memory) until the file closes, so a load peaked at
    twice the model (15.1 GB for the 7.6 GB int8 7B-shaped model). Reading each tensor
    into its own allocation keeps the peak at the model plus one tensor.
    """
    with open(path, "rb") as f:
        header, start = _read_header(f)
    metadata = header.pop("__metadata__", None) or {}

    def tensors() -> Iterator[tuple[str, torch.Tensor]]:
        with open(path, "rb") as f:
            for name, entry in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
                begin, end = entry["data_offsets"]
                dtype = _DTYPES.get(entry["dtype"])
                if dtype is None:
                    raise SoftPromptError(f"{path}: tensor {name!r} has dtype {entry['dtype']}, not one we write")
                raw = torch.empty(end - begin, dtype=torch.uint8)
                f.seek(start + begin)
                if f.readinto(memoryview(raw.numpy())) != end - begin:
                    raise SoftPromptError(f"{path} is cut short (tensor {name!r}); delete it to quantise again")
                yield name, raw.view(dtype).reshape(entry["shape"])

    return metadata, tensors()


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
            value = value.detach().to("cpu").contiguous()
            if value.untyped_storage().nbytes() != value.numel() * value.element_size():
                value = value.clone()  # a view of a table siblings share (fused.py): safetensors saves no views
            tensors[f"{name}.{key}"] = value
    metadata = {"quantization": json.dumps(q.to_dict()), "shared": json.dumps(_shared_names(model), sort_keys=True)}
    with atomic_path(Path(folder) / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_quantized(folder: Path, config, q: Quantization, *, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The model of `config` with the weights of `folder`/quantized.safetensors, quantised as `q` says."""
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise SoftPromptError(f"{path} does not exist: the folder holds no quantised model")
    model = quantized_skeleton(config, q, dtype=dtype)
    metadata, tensors = _read_tensors(path)
    saved = Quantization.from_dict(json.loads(metadata.get("quantization", "{}") or "{}"))
    if saved != q:
        raise SoftPromptError(f"{path} holds a model quantised as {saved}, not {q}; quantise it again")
    if json.loads(metadata.get("shared", "{}")) != _shared_names(model):
        raise SoftPromptError(f"{path}: its tied weights do not match the model's configuration")
    matrices = dict(quantized_modules(model))
    # How many tensors each matrix's portable form has (computed on the empty skeleton: free).
    expected = {name: len(matrix.portable()) for name, matrix in matrices.items()}
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors:
        owner, _, key = name.rpartition(".")
        if owner not in matrices:
            load_tensor_(model, name, tensor, q)
            continue
        parts.setdefault(owner, {})[key] = tensor
        if len(parts[owner]) == expected[owner]:
            matrices[owner].load_portable_(parts.pop(owner))
    if parts:
        raise SoftPromptError(f"{path}: quantised matrix {next(iter(parts))!r} is incomplete; quantise it again")
    missing = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if missing:
        raise SoftPromptError(f"{path} lacks {len(missing)} tensor(s) the model needs, e.g. {missing[0]!r}")
    return model.eval()
