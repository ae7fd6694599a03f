"""Load a base model quantised (int8, int4): never whole in fp32, built once, then read from the cache.

Whatever the source (a GGUF file or built-in alias, a transformers folder, a
Hub id, a synthetic model), the first load builds the model the same way:

1. the config and tokenizer (cheap: a GGUF's come from transformers'
   `gguf_file=` loaders, which read its metadata only);
2. `quant.quantized_skeleton(config, q)`: the model on the meta device with
   quantised modules in place, no weight allocated;
3. the source's tensors one at a time (`weight_stream`, `synthetic`), each
   quantised into its module by `quant.load_tensor_` and freed;
4. `quant.save_quantized` into the cache, with the config, the tokenizer and
   a `source.json` (what it was made from; the fingerprint of the source's
   float embedding, so prompts trained at one precision load at another).

The cache folder is named by the source's identity (a GGUF file's sha256,
a folder's weight files, a synthetic model's config and seed), the
quantisation and the dtype, and written in one rename; later loads read it
in seconds (`quant.load_quantized`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import SoftPromptError
from .fileio import write_dir_atomic
from .fingerprint import embedding_fingerprint
from .model_store import SOURCE_FILE, file_digest, models_dir
from .quant import Quantization, load_quantized, load_tensor_, quantized_skeleton, save_quantized
from .weight_stream import Stream


@dataclass(frozen=True)
class Source:
    """Where a model's weights come from, and how to read its config, tokenizer and tensors."""

    shown: str  # what the user named
    key: str  # identifies the weights (part of the cache folder's name)
    config: Callable[[], object]
    tokenizer: Callable[[], object]
    stream: Callable[[object], Stream]


def gguf_source(path: Path, shown: str, digest: str | None = None) -> Source:
    from .weight_stream import gguf_stream

    def config():
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)

    def tokenizer():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)

    return Source(shown, digest or file_digest(path), config, tokenizer, lambda c: gguf_stream(path, c))


def folder_source(folder: Path, shown: str) -> Source:
    """A folder saved by transformers (or a Hub snapshot): its safetensors shards, streamed."""
    from .weight_stream import safetensors_files, safetensors_stream

    files = safetensors_files(folder)
    identity = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()

    def config():
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(str(folder))

    def tokenizer():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(folder))

    return Source(shown, key, config, tokenizer, lambda c: safetensors_stream(files, c))


def synthetic_source(name: str) -> Source:
    from .synthetic import synthetic_config, synthetic_key, synthetic_stream, synthetic_tokenizer

    return Source(
        name,
        synthetic_key(name),
        lambda: synthetic_config(name),
        lambda: synthetic_tokenizer(name),
        synthetic_stream,
    )


def hub_folder(name: str) -> Path:
    """A Hub model's snapshot (config, tokenizer, safetensors), from the local Hub cache or downloaded."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]
    try:
        return Path(snapshot_download(name, allow_patterns=patterns))
    except Exception as e:  # the hub client raises many types (offline, gated, unknown id)
        raise SoftPromptError(
            f"could not load model '{name}': it is not a built-in alias, a .gguf file, a synthetic model or a "
            f"folder saved by transformers, and the Hugging Face Hub could not provide it ({type(e).__name__}: {e})"
        ) from e


def cache_folder(source: Source, q: Quantization, dtype: torch.dtype) -> Path:
    tag = f"int4-g{q.group_size}" if q.mode == "int4" else q.mode
    if dtype != torch.float32:
        tag += f"-{str(dtype).removeprefix('torch.')}"
    return models_dir() / f"{source.key[:24]}-{quant_format()}-{tag}"


@functools.cache
def quant_format() -> str:
    """A digest of the quantisation code: a copy written by another version of its layouts is never read.

    (A file of an older int4 layout loads without error and computes garbage, so a
    version number someone must remember to bump is not enough.)
    """
    from . import quant

    digest = hashlib.sha256()
    for path in sorted(Path(quant.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:8]


@dataclass
class Loaded:
    model: nn.Module
    tokenizer: object
    fingerprint: str  # of the source's float embedding
    folder: Path  # the cache folder


def load_quantized_source(source: Source, q: Quantization, *, dtype: torch.dtype = torch.float32) -> Loaded:
    """The quantised model of `source`: from its cache folder, else built tensor by tensor and cached."""
    from transformers import AutoConfig, AutoTokenizer

    folder = cache_folder(source, q, dtype)
    if (folder / SOURCE_FILE).is_file():
        try:
            config = AutoConfig.from_pretrained(str(folder))
            meta = json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
            model = load_quantized(folder, config, q, dtype=dtype)
            return Loaded(model, AutoTokenizer.from_pretrained(str(folder)), meta["fingerprint"], folder)
        except Exception as e:  # safetensors, json, the quant layer: whatever makes the copy unreadable
            # The cache is ours: a copy written by another version (or damaged) is made again, not a user's problem.
            print(f"softprompt: rebuilding the cached model {folder.name} ({e})", file=sys.stderr)
    config, tokenizer = source.config(), source.tokenizer()
    model, fingerprint = build_quantized(config, source.stream(config), q, dtype=dtype, shown=source.shown)

    def fill(tmp: Path) -> None:
        save_quantized(model, tmp)
        config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        record = {"source": source.shown, "key": source.key, "quantization": str(q), "fingerprint": fingerprint}
        (tmp / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    try:
        write_dir_atomic(folder, fill)
    except OSError:
        if not (folder / SOURCE_FILE).is_file():  # another process finishing the same folder first is fine
            raise
    return Loaded(model, tokenizer, fingerprint, folder)


def build_quantized(
    config, stream: Stream, q: Quantization, *, dtype: torch.dtype = torch.float32, shown: str = "the model"
) -> tuple[nn.Module, str]:
    """The skeleton of `config` filled from `stream` one tensor at a time; and the embedding's fingerprint."""
    from .weight_stream import meta_model

    plain = meta_model(config)
    embedding_name = _parameter_name(plain, plain.get_input_embeddings().weight)
    # Each storage once: a tied head is filled with the embedding.
    needed = {_parameter_name(plain, t) for t in {id(t): t for t in plain.state_dict(keep_vars=True).values()}.values()}
    del plain
    model = quantized_skeleton(config, q, dtype=dtype)
    fingerprint = None
    for name, tensor in stream:
        if name == embedding_name:
            fingerprint = embedding_fingerprint(tensor)
        load_tensor_(model, name, tensor, q)
        needed.discard(name)
        del tensor
    missing = sorted(needed) or [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if missing:
        raise SoftPromptError(
            f"{shown}: the weights lack {len(missing)} tensor(s) the {type(model).__name__} needs, "
            f"e.g. {missing[0]!r}; is the file complete and of this architecture?"
        )
    return model.eval(), fingerprint


def _parameter_name(model: nn.Module, tensor: torch.Tensor) -> str:
    """The first name `tensor` has in `model`'s state dict."""
    return next(name for name, t in model.state_dict(keep_vars=True).items() if t is tensor)
