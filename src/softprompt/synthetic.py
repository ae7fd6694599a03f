"""Models with real shapes and random weights (`--model synthetic:qwen2-7b`), for memory and speed figures.

No 7B model installs offline here, yet what a 7B model costs (load time,
memory to train a prompt, decode speed) depends only on its shapes. A
synthetic model has the shapes of a real one and seeded random weights, and
is built tensor by tensor straight into int8/int4 by the same code that loads
a user's real 7B (`quantized_load`), so it is never whole in fp32 and it
exercises exactly that path. Its output is noise: quality is not its purpose.

The tokenizer is borrowed from the installed Qwen2.5-Coder GGUF (the Qwen2
vocabulary; the 7B's embedding has 152064 rows, a few hundred more than the
tokenizer uses, as in the real model).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .errors import SoftPromptError
from .weight_stream import Stream, meta_model

PREFIX = "synthetic:"
INIT_STD = 0.02  # transformers' initializer_range for Qwen2: activations stay finite through 28 layers
TOKENIZER_DONORS = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")


@dataclass(frozen=True)
class SyntheticShape:
    """A transformers config (as keyword arguments of `model_type`'s config class) and where its tokenizer comes from."""

    model_type: str
    config: dict
    tokenizer: Callable[[], object]
    description: str = ""


def borrowed_qwen_tokenizer():
    """The Qwen2.5 tokenizer from an installed Qwen2.5-Coder GGUF file."""
    from transformers import AutoTokenizer

    from .model_install import installed_file

    for alias in TOKENIZER_DONORS:
        path = installed_file(alias)
        if path is not None:
            return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    raise SoftPromptError(
        "a synthetic Qwen2 model borrows the Qwen2.5 tokenizer from an installed Qwen2.5-Coder model; "
        f"install one first: softprompt models install {TOKENIZER_DONORS[0]}"
    )


SYNTHETIC_MODELS: dict[str, SyntheticShape] = {
    "qwen2-7b": SyntheticShape(
        model_type="qwen2",
        config=dict(
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
            vocab_size=152064,
            max_position_embeddings=32768,
            rope_theta=1e6,
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
            bos_token_id=151643,
            eos_token_id=151645,
        ),  # fmt: skip
        tokenizer=borrowed_qwen_tokenizer,
        description="Qwen2-7B shapes (7.6B parameters: 28 layers, d=3584, 28/4 heads, vocab 152064), random weights",
    ),
}


def is_synthetic(name: str) -> bool:
    return name.startswith(PREFIX)


def fp32_refused(name: str) -> SoftPromptError:
    return SoftPromptError(f"'{name}' is built quantised only (it would not fit in fp32): add --quantize int8 or int4")


def synthetic_shape(name: str) -> SyntheticShape:
    key = name.removeprefix(PREFIX)
    if key not in SYNTHETIC_MODELS:
        known = ", ".join(PREFIX + k for k in SYNTHETIC_MODELS)
        raise SoftPromptError(f"unknown synthetic model '{name}'; known: {known}")
    return SYNTHETIC_MODELS[key]


def synthetic_config(name: str):
    from transformers import AutoConfig

    shape = synthetic_shape(name)
    return AutoConfig.for_model(shape.model_type, **shape.config)


def synthetic_key(name: str, seed: int = 0) -> str:
    """What identifies the model's weights: its config, the seed and the way they are drawn."""
    shape = synthetic_shape(name)
    text = json.dumps({"type": shape.model_type, "config": shape.config, "seed": seed, "std": INIT_STD, "v": 1})
    return hashlib.sha256(text.encode()).hexdigest()


def synthetic_stream(config, seed: int = 0) -> Stream:
    """Seeded random tensors for every weight of the model of `config`, biggest first, one at a time.

    Each tensor's generator is seeded by its name, so the weights do not depend on
    the order they are made in. Norm weights are 1 and biases 0 (as initialised).
    """
    shapes = {name: tuple(t.shape) for name, t in meta_model(config).state_dict().items()}
    if getattr(config, "tie_word_embeddings", False):
        shapes.pop("lm_head.weight", None)
    for name in sorted(shapes, key=lambda n: (-_numel(shapes[n]), n)):
        shape = shapes[name]
        if name.endswith(".bias"):
            yield name, torch.zeros(shape)
        elif len(shape) == 1:
            yield name, torch.ones(shape)  # a norm's weight
        else:
            generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
            yield name, torch.empty(shape).normal_(0.0, INIT_STD, generator=generator)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def synthetic_tokenizer(name: str):
    return synthetic_shape(name).tokenizer()
