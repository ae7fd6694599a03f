"""A checkpoint's weights one tensor at a time, named as transformers names them.

A quantised load must never hold the whole model in fp32, so every source is
read as a stream of `(transformers name, float tensor)` pairs, each tensor
freed by the consumer before the next is made:

- a GGUF file: the `gguf` package memory-maps it; each tensor is dequantised
  on its own (`gguf.dequantize`) and renamed with transformers' own GGUF
  mapping and tensor processors, which also undo llama.cpp's q/k row
  permutation for llama and Gemma's norm offset, so the values equal those of
  transformers' fp32 GGUF load;
- safetensors shards (a folder saved by transformers, or a Hub snapshot):
  `safetensors.safe_open` reads one tensor at a time.

Both streams give the biggest tensors first (the embedding and the LM head):
their fp32 copy is then made while the quantised model is still nearly empty,
so the peak is the quantised model plus one layer's matrix, not plus the
biggest matrix.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch

from .errors import SoftPromptError

Stream = Iterator[tuple[str, torch.Tensor]]

# gguf's numpy dequantisers make several temporaries the size of their output: a 152k x 3584 table
# would cost ~9 GB at once. Rows are dequantised this many at a time into one fp32 array instead.
DEQUANTIZE_ROWS = 4096


def gguf_stream(path: Path, config) -> Stream:
    """The tensors of GGUF file `path` as (transformers name, fp32 tensor), for the model of `config`."""
    import numpy as np
    from gguf import GGUFReader
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
        read_field,
    )

    reader = GGUFReader(path)
    architecture = read_field(reader, "general.architecture")[0]
    processor = TENSOR_PROCESSORS.get(architecture, TensorProcessor)(config=config.to_dict())
    mapping = get_gguf_hf_weights_map(meta_model(config), processor)
    # Processors that merge several GGUF tensors into one (MoE experts) put the result here.
    parsed: dict[str, dict] = {"tensors": {}}
    for tensor in sorted(reader.tensors, key=lambda t: -int(t.n_elements)):
        result = processor.process(
            weights=dequantized(tensor),
            name=tensor.name,
            tensor_key_mapping=mapping,
            parsed_parameters=parsed,
        )
        if result.name is None or result.name not in mapping:
            continue
        name, weights = mapping[result.name], result.weights
        del result
        if not (weights.flags.writeable and weights.flags.c_contiguous):
            weights = np.array(weights, dtype=np.float32, order="C")  # F32 tensors are views of the read-only map
        yield name, torch.from_numpy(weights)
        del weights
    yield from _drain(parsed["tensors"])


def dequantized(tensor):
    """The fp32 values of a GGUFReader tensor, `DEQUANTIZE_ROWS` rows at a time."""
    import numpy as np
    from gguf import dequantize

    data, kind = tensor.data, tensor.tensor_type
    if data.ndim < 2 or data.shape[0] <= DEQUANTIZE_ROWS:
        return dequantize(data, kind)
    first = dequantize(data[:1], kind)
    out = np.empty((data.shape[0], *first.shape[1:]), dtype=np.float32)
    for start in range(0, data.shape[0], DEQUANTIZE_ROWS):
        out[start : start + DEQUANTIZE_ROWS] = dequantize(data[start : start + DEQUANTIZE_ROWS], kind)
    return out


def _drain(tensors: dict[str, torch.Tensor]) -> Stream:
    while tensors:
        name = next(iter(tensors))
        yield name, tensors.pop(name)


def safetensors_files(folder: Path) -> list[Path]:
    """The weight files of a transformers folder: its sharded index's files, else model.safetensors."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError, TypeError) as e:
            raise SoftPromptError(f"{index}: not a safetensors index ({e})") from None
        files = [folder / shard for shard in shards]
    else:
        files = sorted(folder.glob("*.safetensors"))
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise SoftPromptError(f"{folder}: the weight file {missing[0].name} is missing")
    if not files:
        raise SoftPromptError(
            f"{folder} holds no .safetensors weights; a quantised load reads safetensors only "
            "(pytorch_model.bin is a pickle): convert it with save_pretrained(..., safe_serialization=True), "
            "or load it with --quantize none"
        )
    return files


def safetensors_stream(files: list[Path], config) -> Stream:
    """The tensors of safetensors `files`, biggest first, renamed to the names of the model of `config`."""
    from safetensors import safe_open

    wanted = set(meta_model(config).state_dict())
    prefix = _base_prefix(config)
    entries = []
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                shape = f.get_slice(key).get_shape()
                numel = 1
                for n in shape:
                    numel *= n
                entries.append((-numel, str(file), key))
    for _, file, key in sorted(entries):
        name = _model_name(key, wanted, prefix)
        if name is None:
            continue  # a tensor the model does not use (a saved rotary table, an encoder of another head)
        with safe_open(file, framework="pt") as f:
            tensor = f.get_tensor(key)
        yield name, tensor
        del tensor


def _base_prefix(config) -> str:
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    model_class = auto._model_mapping[type(config)]
    return getattr(model_class, "base_model_prefix", "model")


def _model_name(key: str, wanted: set[str], prefix: str) -> str | None:
    """`key` as the model names it: checkpoints saved from the bare model lack the `model.` prefix."""
    for name in (key, f"{prefix}.{key}", key.removeprefix(f"{prefix}.")):
        if name in wanted:
            return name
    return None


def meta_model(config) -> torch.nn.Module:
    """The plain transformers model of `config` on the meta device: names and shapes, no memory."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    with torch.device("meta"):
        return auto.from_config(config)
