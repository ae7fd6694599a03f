"""Quantise a transformers model in place, build an empty quantised one, and fill it tensor by tensor.

What is quantised: every nn.Linear and GPT-2 Conv1D, the input embedding and
the LM head (a tied head keeps sharing the embedding's one quantised matrix).
Norms, biases, position tables (GPT-2's wpe, T5's relative bias) and buffers
stay as they are: they are small, and norms are where low precision hurts.

In int4 mode the embedding and the LM head are int8, as llama.cpp keeps its
token table and output at 6-8 bits in its 4-bit files: on SmolLM2-135M the
4-bit table alone multiplied the logits' error by five (docs/quantization.md).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from ..errors import SoftPromptError
from .config import Quantization
from .embedding import QuantizedEmbedding
from .int4 import Int4Matrix
from .int8 import Int8Matrix
from .linear import QuantizedLinear
from .matrix import QuantizedMatrix


def _is_conv1d(module: nn.Module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, Conv1D)


def new_matrix(q: Quantization, out_features: int, in_features: int, *, dtype, device) -> QuantizedMatrix:
    """An empty (uninitialised) matrix of mode `q`."""
    if q.mode == "int8":
        return Int8Matrix(out_features, in_features, dtype=dtype, device=device)
    if q.mode == "int4":
        return Int4Matrix(out_features, in_features, q.group_size, dtype=dtype, device=device)
    raise ValueError(f"no quantised matrix for mode {q.mode!r}")


def quantize_matrix(weight: torch.Tensor, q: Quantization) -> QuantizedMatrix:
    """`weight` [out, in] quantised (a meta weight gives an empty matrix of the right shape)."""
    matrix = new_matrix(q, *weight.shape, dtype=weight.dtype, device=weight.device)
    if not weight.is_meta:
        matrix.load_float_(weight)
    return matrix


def table_quantization(q: Quantization) -> Quantization:
    """How the embedding table and the LM head are held under `q`: int8 for both int8 and int4."""
    return Quantization("int8") if q.enabled else q


def _quantized(
    module: nn.Module, q: Quantization, embedding: nn.Module, head: nn.Module | None, done: dict[int, nn.Module]
) -> nn.Module | None:
    """The quantised replacement of `module`, or None if it stays as it is."""
    if isinstance(module, nn.Embedding) and module is not embedding and module.weight is embedding.weight:
        return done[id(embedding)]  # another place of the same table (T5's encoder and decoder embed_tokens)
    if module is embedding:
        scale = getattr(module, "embed_scale", None)
        return QuantizedEmbedding(quantize_matrix(module.weight, table_quantization(q)), module.padding_idx, scale)
    if isinstance(module, nn.Linear):
        tied = done.get(id(embedding))
        if isinstance(tied, QuantizedEmbedding) and module.weight is embedding.weight:
            return QuantizedLinear(tied.matrix, module.bias)
        own = table_quantization(q) if module is head else q
        return QuantizedLinear(quantize_matrix(module.weight, own), module.bias)
    if _is_conv1d(module):
        return QuantizedLinear(quantize_matrix(module.weight.T, q), module.bias, transposed=True)
    return None


def _sites(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """Every (parent, attribute) holding a child module, shared children once per place they appear."""
    return [(parent, name) for parent in model.modules() for name, _ in parent.named_children()]


def quantize_model(model: nn.Module, q: Quantization) -> nn.Module:
    """Quantise `model` in place (see the module doc) and freeze it; returns it.

    Each fp32 weight is freed once replaced (unless the caller holds another reference to it); a
    quantised model is frozen: its backward gives inputs' gradients only.
    """
    if not q.enabled:
        return model
    if quantization_of(model).enabled:
        raise SoftPromptError(f"the model is already quantised ({quantization_of(model)}); load it again to change")
    embedding, head = model.get_input_embeddings(), model.get_output_embeddings()
    done: dict[int, nn.Module] = {}
    # The embedding first, so that a tied head finds its quantised matrix.
    order = sorted(_sites(model), key=lambda site: getattr(site[0], site[1]) is not embedding)
    for parent, name in order:
        child = getattr(parent, name)
        if isinstance(child, (QuantizedLinear, QuantizedEmbedding)):
            continue
        new = done.get(id(child))
        if new is None:
            new = _quantized(child, q, embedding, head, done)
            if new is None:
                continue
            done[id(child)] = new
        setattr(parent, name, new)
    _own_storage(model)
    return model


def _own_storage(model: nn.Module) -> None:
    """Freeze what stays unquantised and copy it into memory of its own (shared tensors stay shared).

    transformers loads safetensors files by mapping them, and the norms it keeps would hold
    the whole file's mapping (and every page of it the quantising read) resident.
    """
    copies: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for table, as_param in ((module._parameters, True), (module._buffers, False)):
            for name, tensor in table.items():
                if tensor is None or tensor.is_meta or isinstance(module, QuantizedMatrix):
                    continue
                if id(tensor) not in copies:
                    data = tensor.detach().clone()
                    copies[id(tensor)] = nn.Parameter(data, requires_grad=False) if as_param else data
                table[name] = copies[id(tensor)]


def quantized_modules(model: nn.Module) -> Iterator[tuple[str, QuantizedMatrix]]:
    """(name, matrix) of each distinct quantised matrix, by its first name."""
    seen: set[int] = set()
    for name, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, QuantizedMatrix) and id(module) not in seen:
            seen.add(id(module))
            yield name, module


def quantization_of(model: nn.Module) -> Quantization:
    """The quantisation `model` holds its weights in (mode "none" for a plain model).

    Its linear layers say it: under int4 the embedding and head are int8 (`table_quantization`).
    """
    modes = {(m.mode, getattr(m, "group_size", 32)) for _, m in quantized_modules(model)}
    int4 = [group for mode, group in modes if mode == "int4"]
    if int4:
        return Quantization("int4", int4[0])
    return Quantization("int8") if modes else Quantization()


def quantized_skeleton(config, q: Quantization, *, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The transformers model of `config` with quantised modules in place and no weight allocated.

    Parameters are built on the meta device (accelerate's init_empty_weights); buffers
    computed at construction (rotary frequencies, Gemma's embedding scale) are real, so
    the model runs once every weight is set with `load_tensor_`.
    """
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    with init_empty_weights(include_buffers=False):
        model = auto.from_config(config, dtype=dtype)
    model.tie_weights()  # init_empty_weights makes a new meta parameter per place, untying the head
    return quantize_model(model, q).eval()


def load_tensor_(model: nn.Module, name: str, tensor: torch.Tensor, q: Quantization) -> None:
    """Set the transformers parameter or buffer `name` from a float tensor, quantising it where its module is.

    Only that module's storage is (re)allocated. For a tied head whose weight is the
    embedding's, either name fills the one shared matrix.
    """
    path, _, attr = name.rpartition(".")
    try:
        module = model.get_submodule(path)
    except AttributeError as e:
        raise SoftPromptError(f"tensor {name!r} names no module of this {type(model).__name__}") from e
    if isinstance(module, (QuantizedLinear, QuantizedEmbedding)) and attr == "weight":
        weight = tensor.T if getattr(module, "transposed", False) else tensor
        if tuple(weight.shape) != (module.matrix.out_features, module.matrix.in_features):
            raise SoftPromptError(f"tensor {name!r} has shape {tuple(tensor.shape)}, which does not fit the model")
        module.matrix.load_float_(weight)
        return
    if attr in module._parameters:
        old = module._parameters[attr]
        if old is not None and tuple(old.shape) != tuple(tensor.shape):
            raise SoftPromptError(
                f"tensor {name!r} has shape {tuple(tensor.shape)}, the model expects {tuple(old.shape)}"
            )
        dtype = old.dtype if old is not None else tensor.dtype
        module._parameters[attr] = nn.Parameter(tensor.to(dtype), requires_grad=False)
        return
    if attr in module._buffers:
        module._buffers[attr] = tensor
        return
    raise SoftPromptError(f"tensor {name!r}: {type(module).__name__} has no parameter or buffer {attr!r}")


def dequantized_model(model: nn.Module) -> nn.Module:
    """A plain float copy of a quantised model, its weights the dequantised ones (tests' exact reference).

    This holds every weight in full precision: for tiny models and tests only.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    config = model.config
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    plain = auto.from_config(config, dtype=torch.float32)
    state = {k: v for k, v in model.state_dict().items() if ".matrix." not in k}
    for name, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, (QuantizedLinear, QuantizedEmbedding)):
            weight = module.matrix.dequantized()
            state[f"{name}.weight"] = weight.T if getattr(module, "transposed", False) else weight
    plain.load_state_dict(state, strict=False)
    plain.tie_weights()
    for p in plain.parameters():
        p.requires_grad_(False)
    return plain.eval()


def weight_count(model: nn.Module) -> int:
    """Parameters of the model as a plain model would count them (a quantised matrix: out x in)."""
    plain = sum(p.numel() for p in model.parameters())
    return plain + sum(m.out_features * m.in_features for _, m in quantized_modules(model))


def weight_bytes(model: nn.Module) -> int:
    """Bytes the weights take in memory: parameters and buffers, each storage once."""
    seen, total = set(), 0
    for t in (*model.parameters(), *model.buffers()):
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key not in seen and not t.is_meta:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total
