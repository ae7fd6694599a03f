"""SoftPrompt: the [T, d] tensor that is the whole trained artefact.

File format (a folder, readable by Hugging Face PEFT as a prompt-tuning adapter):

    adapter_config.json          PEFT's PromptTuningConfig fields
    adapter_model.safetensors    one tensor `prompt_embeddings` [T, d], fp32;
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
import logging
import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import ClassVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from . import __version__
from .errors import PromptFileError, SoftPromptError, describe_os_error
from .fileio import write_dir_atomic
from .forward import PromptState, prompt_state
from .model_names import resolvable_name
from .models import BaseModel

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
INITIAL_FILE = "initial_embeddings.safetensors"
HUB_FILES = (CONFIG_FILE, WEIGHTS_FILE, INITIAL_FILE)  # what from_pretrained fetches of a Hub repository
TENSOR_NAME = "prompt_embeddings"
METADATA_KEY = "softprompt"

# Lester et al. sample initial prompt tokens from the 5,000 most common tokens.
FREQUENT_TOKENS = 5000

log = logging.getLogger("softprompt")


@dataclass(frozen=True)
class PromptMeta:
    """What a prompt is for and where it came from; travels inside the prompt file.

    Built once and never changed: a new fact (the training figures, say) makes a
    new PromptMeta with `dataclasses.replace`.
    """

    task: str | None = None  # the task kind (tasks.task_kinds(): "classify", "generate", ...)
    template: str | None = None  # e.g. "Review: {text}\nSentiment:"
    verbalizer: dict[str, str] | None = None  # label -> answer words, e.g. {"fresh": " positive"}
    target_column: str | None = None  # text-to-text prompts: the data's target column
    format: str | None = None  # "chat": trained on conversations (tasks/chat.py); None: on `template`
    system: str | None = None  # chat prompts: the system message all training rows shared
    base_model: str | None = None
    base_fingerprint: str | None = None
    # The base model's quantisation when the prompt was made (`Quantization.to_dict()`); None: not recorded.
    base_quantization: dict | None = None
    init: str | None = None
    training: dict = field(default_factory=dict)  # figures: steps, time, dev metrics, ...
    softprompt_version: str = __version__

    def to_json(self) -> str:
        return json.dumps(asdict(self))  # no sort_keys: label order is the class order

    @classmethod
    def from_json(cls, text: str, *, where: str) -> PromptMeta:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise PromptFileError(f"{where}: the softprompt metadata is not valid JSON ({e})") from e
        if not isinstance(raw, dict):
            raise PromptFileError(f"{where}: the softprompt metadata should be a JSON object, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        # Ignore fields from newer versions rather than refusing the file.
        kept = {k: v for k, v in raw.items() if k in known}
        for name, value in kept.items():
            if not _meta_field_ok(name, value):
                raise PromptFileError(
                    f"{where}: softprompt metadata field '{name}' has the wrong type ({type(value).__name__}: "
                    f"{str(value)[:60]!r}); the file is corrupt or was edited by hand"
                )
        return cls(**kept)


_TEXT_FIELDS = frozenset(
    {"task", "template", "target_column", "format", "system", "base_model", "base_fingerprint", "init"}
    | {"softprompt_version"}
)


def _meta_field_ok(name: str, value: object) -> bool:
    """Whether a metadata value has its field's type (a wrong one would fail far from the file, or crash)."""
    if name == "training":
        return isinstance(value, dict)
    if name == "base_quantization":
        return value is None or (isinstance(value, dict) and isinstance(value.get("mode"), str))
    if name == "verbalizer":
        return value is None or (
            isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        )
    if name in _TEXT_FIELDS:
        return value is None or isinstance(value, str)
    return True  # a field added later: not refused for want of a rule here


class BasePrompt(nn.Module):
    """What every prompt method's artefact shares: T rows of trained numbers, metadata, the folder format.

    A subclass (one per method: `SoftPrompt` here, `prefix.PrefixPrompt`) says what its
    rows are (`weights`), how they become what the forward takes (`state_of`), which
    PEFT adapter type its folder is, and which base models it fits (`_misfit`). The
    files, the metadata and the wrong-model guard are the same for all.
    """

    METHOD: ClassVar[str]  # the name on the command line: --method prompt|prefix
    PEFT_TYPE: ClassVar[str]  # adapter_config.json's peft_type

    meta: PromptMeta
    initial: torch.Tensor | None  # the weights before training, kept so inspect can measure drift

    @property
    def weights(self) -> torch.Tensor:
        """The [T, width] tensor that is the whole trained artefact (what the folder stores)."""
        raise NotImplementedError

    @property
    def num_virtual_tokens(self) -> int:
        return self.weights.shape[0]

    @property
    def num_parameters(self) -> int:
        return self.weights.numel()

    @property
    def shape_text(self) -> str:
        """The artefact's shape in words, e.g. '20x576'."""
        return "x".join(str(n) for n in self.weights.shape)

    @property
    def token_dim(self) -> int:
        """The size of one vector the prompt is made of (a reparam MLP's default width, as PEFT's)."""
        raise NotImplementedError

    def layout(self) -> dict[str, int]:
        """The method's shape facts by name (`info` shows them)."""
        raise NotImplementedError

    @classmethod
    def state_of(cls, base: BaseModel, weights: torch.Tensor, *, share_prefix: bool = True) -> PromptState:
        """What the forward takes for `weights` of this method (differentiable)."""
        raise NotImplementedError

    def state(self, base: BaseModel, *, share_prefix: bool = True) -> PromptState:
        """This prompt as the forward takes it (`forward.prompt_state` accepts the prompt itself too)."""
        return self.state_of(base, self.weights, share_prefix=share_prefix)

    def with_weights(self, weights: torch.Tensor, meta: PromptMeta | None = None) -> BasePrompt:
        """The same prompt (method, shape, initial value) holding other weights, e.g. the best ones of a run."""
        raise NotImplementedError

    def peft_config(self, base: BaseModel | None) -> dict:
        """adapter_config.json: the PEFT config that makes `PeftModel.from_pretrained(base, folder)` work."""
        raise NotImplementedError

    @classmethod
    def _from_file(
        cls, config: dict, tensor: torch.Tensor, meta: PromptMeta, initial: torch.Tensor | None, where: str
    ) -> BasePrompt:
        raise NotImplementedError

    def _misfit(self, base: BaseModel) -> str | None:
        """Why this prompt cannot run on `base` whatever the user allows (another shape), or None."""
        raise NotImplementedError

    # -- files ---------------------------------------------------------------

    def save(self, folder: str | Path, base: BaseModel | None = None) -> Path:
        """Write the prompt folder atomically; `base` fills PEFT's model-shape fields."""
        folder = Path(folder)
        config = self.peft_config(base)
        weights = self.weights.detach().cpu().contiguous()
        metadata = {"format": "pt", METADATA_KEY: self.meta.to_json()}

        def fill(tmp: Path) -> None:
            (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            save_file({TENSOR_NAME: weights}, str(tmp / WEIGHTS_FILE), metadata=metadata)
            if self.initial is not None:
                save_file({TENSOR_NAME: self.initial.cpu().contiguous()}, str(tmp / INITIAL_FILE))

        write_dir_atomic(folder, fill)
        return folder

    @classmethod
    def load(cls, folder: str | Path, base: BaseModel | None = None, *, allow_mismatch: bool = False) -> BasePrompt:
        """Read a folder of this method (ours or PEFT's); with `base`, refuse a prompt made for another model."""
        folder = Path(folder)
        config = read_peft_config(folder, accept=(cls.PEFT_TYPE,))
        weights_path = folder / WEIGHTS_FILE
        tensor, meta_text = _read_tensor(weights_path, want_metadata=True)
        if tensor.dim() != 2:
            raise PromptFileError(f"{weights_path}: '{TENSOR_NAME}' should be [T, d], got shape {tuple(tensor.shape)}")
        meta = PromptMeta.from_json(meta_text, where=str(weights_path)) if meta_text else _meta_from_peft(config)
        initial = None
        if (folder / INITIAL_FILE).is_file():
            initial, _ = _read_tensor(folder / INITIAL_FILE, want_metadata=False)
        prompt = cls._from_file(config, tensor, meta, initial, str(folder))
        if base is not None:
            prompt.check_compatible(base, where=str(folder), allow_mismatch=allow_mismatch)
        return prompt

    def check_compatible(
        self, base: BaseModel, *, where: str, allow_mismatch: bool = False, note_precision: bool = True
    ) -> None:
        """Refuse a prompt trained for another base model: its vectors would mean nothing here.

        The same model at another precision is accepted, with a one-line notice (`note_precision=False`: none,
        for a second check of a prompt whose loading said it already).
        """
        misfit = self._misfit(base)
        if misfit:
            raise PromptFileError(
                f"{where}: {misfit}; it was made for another model ({self.meta.base_model or 'unknown'})"
            )
        want = self.meta.base_fingerprint
        if want and want != base.fingerprint and not allow_mismatch:
            raise PromptFileError(
                f"{where}: the prompt was trained on '{self.meta.base_model}' (embedding fingerprint {want}) "
                f"but '{base.name}' has fingerprint {base.fingerprint}; use the model it was trained on, "
                f"or pass --allow-model-mismatch to use it anyway"
            )
        trained, here = trained_precision(self.meta), precision_text(base.quantization.to_dict())
        if note_precision and trained is not None and trained != here:
            # The fingerprint ignores precision on purpose: the same model at another precision is the same model.
            log.warning(
                "%s: notice: trained on %s weights, running on %s weights (scores may differ slightly)",
                where,
                trained,
                here,
            )

    def save_pretrained(self, save_directory: str | Path, base: BaseModel | None = None) -> Path:
        """`save` under Hugging Face's name: the folder `from_pretrained` and PEFT read."""
        return self.save(save_directory, base)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        base: BaseModel | None = None,
        *,
        allow_mismatch: bool = False,
        revision: str | None = None,
    ) -> BasePrompt:
        """`load` a prompt folder, or a Hugging Face Hub repository holding one (`user/name`, fetched once)."""
        return cls.load(prompt_folder(name_or_path, revision=revision), base, allow_mismatch=allow_mismatch)

    def file_size(self, folder: str | Path) -> int:
        return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file())


class SoftPrompt(BasePrompt):
    """T trainable virtual-token embeddings, kept in fp32 whatever the model's dtype."""

    METHOD = "prompt"
    PEFT_TYPE = "PROMPT_TUNING"

    def __init__(
        self,
        embeddings: torch.Tensor,
        meta: PromptMeta | None = None,
        initial: torch.Tensor | None = None,
    ):
        super().__init__()
        if embeddings.dim() != 2 or embeddings.shape[0] == 0:
            raise SoftPromptError(f"a prompt is a [T, d] tensor with T >= 1, got shape {tuple(embeddings.shape)}")
        self.embeddings = nn.Parameter(embeddings.detach().to(torch.float32).clone())
        self.meta = meta or PromptMeta()
        # The prompt before training; kept (not trained) so inspect can measure drift.
        self.initial = None if initial is None else initial.detach().to(torch.float32).clone()

    @property
    def weights(self) -> torch.Tensor:
        return self.embeddings

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    @property
    def token_dim(self) -> int:
        return self.dim

    def layout(self) -> dict[str, int]:
        return {"dim": self.dim}

    @classmethod
    def initialize(
        cls,
        base: BaseModel,
        num_virtual_tokens: int = 20,
        init: str = "vocab",
        *,
        label_words: list[str] | None = None,
        seed: int = 0,
        meta: PromptMeta | None = None,
        allow_mismatch: bool = False,
    ) -> SoftPrompt:
        """A new prompt for `base`; `init` is random, vocab, labels, text:"...", or file:PATH.

        `allow_mismatch`: a file: prompt made for another model of the same hidden size is taken anyway.
        """
        check_length(num_virtual_tokens)
        gen = torch.Generator().manual_seed(seed)
        emb = initial_embeddings(base, num_virtual_tokens, init, label_words, gen, allow_mismatch=allow_mismatch)
        return cls(emb, new_meta(base, meta, init), initial=emb)

    def forward(self) -> torch.Tensor:
        return self.embeddings

    @classmethod
    def state_of(cls, base: BaseModel, weights: torch.Tensor, *, share_prefix: bool = True) -> PromptState:
        return prompt_state(base, weights, share_prefix=share_prefix)

    def with_weights(self, weights: torch.Tensor, meta: PromptMeta | None = None) -> SoftPrompt:
        return SoftPrompt(weights, meta or self.meta, initial=self.initial)

    def peft_config(self, base: BaseModel | None) -> dict:
        return peft_config(self, base)

    @classmethod
    def _from_file(
        cls, config: dict, tensor: torch.Tensor, meta: PromptMeta, initial: torch.Tensor | None, where: str
    ) -> SoftPrompt:
        t = config.get("num_virtual_tokens") or tensor.shape[0]
        # PEFT stores 2*T rows for seq2seq models (encoder and decoder); prompt tuning uses the first T.
        if tensor.shape[0] < t:
            raise PromptFileError(
                f"{where}: {CONFIG_FILE} says num_virtual_tokens={t} but the tensor has {tensor.shape[0]} rows"
            )
        return cls(tensor[:t], meta, initial=initial)

    def _misfit(self, base: BaseModel) -> str | None:
        if self.dim != base.hidden_size:
            return f"the prompt has dimension {self.dim} but model '{base.name}' has hidden size {base.hidden_size}"
        return None


def check_length(num_virtual_tokens: int) -> None:
    if num_virtual_tokens < 1:
        raise SoftPromptError(f"--num-virtual-tokens must be at least 1, got {num_virtual_tokens}")


def new_meta(base: BaseModel, meta: PromptMeta | None, init: str) -> PromptMeta:
    """A new prompt's metadata: `meta` with the init and the base model it is made for."""
    meta = meta or PromptMeta()
    return replace(
        meta,
        init=init,
        base_model=meta.base_model or base.name,
        base_fingerprint=base.fingerprint,
        base_quantization=base.quantization.to_dict(),
    )


def precision_text(quantization: dict) -> str:
    """A recorded quantisation (`Quantization.to_dict()`) in words: "full-precision", "int8", "int4 (groups of 32)"."""
    mode = quantization["mode"]
    group = quantization.get("group_size")
    if mode == "none":
        return "full-precision"
    return f"{mode} (groups of {group})" if mode == "int4" and group else mode


def trained_precision(meta: PromptMeta) -> str | None:
    """The precision a prompt was made on, in words; None if unknown (a PEFT file).

    softprompt's prompts from before quantisation existed record none and were made on full-precision weights.
    """
    if meta.base_quantization is not None:
        return precision_text(meta.base_quantization)
    return "full-precision" if meta.base_fingerprint else None


def check_compatible(prompt: BasePrompt, base: BaseModel, *, where: str, allow_mismatch: bool = False) -> None:
    """Refuse a prompt trained for another base model: its vectors would mean nothing here."""
    prompt.check_compatible(base, where=where, allow_mismatch=allow_mismatch)


def peft_config(prompt: SoftPrompt, base: BaseModel | None) -> dict:
    """PEFT's PromptTuningConfig as JSON, so `PeftModel.from_pretrained(base, folder)` works."""
    family = base.family if base is not None else None
    text_init = (prompt.meta.init or "").startswith("text:")
    return {
        **peft_common(prompt, base, "PROMPT_TUNING"),
        "num_attention_heads": None if family is None else family.num_heads,
        "num_layers": None if family is None else family.num_layers,
        # One prompt for the encoder only: we never store PEFT's unused decoder half.
        "num_transformer_submodules": 1,
        "prompt_tuning_init": "TEXT" if text_init else "RANDOM",
        "prompt_tuning_init_text": prompt.meta.init[len("text:") :] if text_init else None,
        "token_dim": prompt.dim,
        "tokenizer_kwargs": None,
        "tokenizer_name_or_path": resolvable_name(prompt.meta.base_model) if text_init else None,
    }


def peft_common(prompt: BasePrompt, base: BaseModel | None, peft_type: str) -> dict:
    """The config fields every PEFT prompt-learning adapter has."""
    return {
        "auto_mapping": None,
        # PEFT's loaders (AutoPeftModelForCausalLM) load this name: a built-in alias becomes its hub id,
        # while our metadata keeps the alias (model_names.py).
        "base_model_name_or_path": resolvable_name(prompt.meta.base_model),
        "inference_mode": True,
        "modules_to_save": None,
        "num_virtual_tokens": prompt.num_virtual_tokens,
        "peft_type": peft_type,
        "revision": None,
        "task_type": "SEQ_2_SEQ_LM" if base is not None and base.is_seq2seq else "CAUSAL_LM",
    }


_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def prompt_folder(name_or_path: str | Path, *, revision: str | None = None) -> Path:
    """A local prompt folder as given; a Hub repository id (`user/name`, not a local path) downloaded.

    Only a prompt folder's own files are fetched (huggingface_hub caches them, and
    answers from its cache when HF_HUB_OFFLINE=1). A name that is neither raises
    PromptFileError saying both.
    """
    path = Path(name_or_path).expanduser()
    if path.exists() or not _REPO_ID.fullmatch(str(name_or_path)):
        return path  # load() says what is wrong with a missing or broken folder
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name_or_path), revision=revision, allow_patterns=list(HUB_FILES)))
    except Exception as e:  # offline, unknown repository, no access: huggingface_hub raises many kinds
        reason = str(e).splitlines()[0][:200] if str(e) else ""
        raise PromptFileError(
            f"'{name_or_path}' is no prompt folder here, and fetching it from the Hugging Face Hub failed "
            f"({type(e).__name__}{': ' + reason if reason else ''}); check the name, or download it where there is "
            "a network and pass the folder"
        ) from None


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


# -- initialisation -----------------------------------------------------------


def initial_embeddings(
    base: BaseModel,
    t: int,
    init: str,
    label_words: list[str] | None,
    gen: torch.Generator,
    *,
    allow_mismatch: bool = False,
) -> torch.Tensor:
    """[T, d] input-embedding-space vectors to start a prompt from (every method starts from these)."""
    d = base.hidden_size
    if init == "random":
        return torch.rand(t, d, generator=gen) - 0.5
    if init == "vocab":
        return _sample_vocab(base, t, gen)
    if init == "labels":
        return _label_init(base, t, label_words, gen)
    if init.startswith("text:"):
        return _text_init(base, t, init[len("text:") :])
    if init.startswith("file:"):
        source = SoftPrompt.load(init[len("file:") :], base, allow_mismatch=allow_mismatch).embeddings.detach()
        return tile_rows(source, t)
    raise SoftPromptError(f"unknown --init '{init}'; choose one of: random, vocab, labels, text:\"...\", file:PATH")


def tile_rows(source: torch.Tensor, t: int) -> torch.Tensor:
    """The first `t` rows of `source` repeated as often as needed (a prompt of another length as a start)."""
    return source.repeat(math.ceil(t / source.shape[0]), 1)[:t].clone()


def frequent_token_ids(base: BaseModel, n: int = FREQUENT_TOKENS) -> torch.Tensor:
    """Ids of (roughly) the n most frequent tokens.

    BPE vocabularies are ordered by merge, i.e. by frequency in the tokenizer's
    training corpus, so the lowest non-special ids are the most common tokens.
    """
    vocab = base.vocab_size
    special = set(getattr(base.tokenizer, "all_special_ids", []) or [])
    ids = [i for i in range(min(vocab, n + len(special))) if i not in special]
    return torch.tensor(ids[:n])


def _embed_ids(base: BaseModel, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return base.embed(ids.to(base.device)).detach().to("cpu", torch.float32)


def _sample_vocab(base: BaseModel, t: int, gen: torch.Generator) -> torch.Tensor:
    pool = frequent_token_ids(base)
    return _embed_ids(base, pool[torch.randint(len(pool), (t,), generator=gen)])


def _label_init(base: BaseModel, t: int, label_words: list[str] | None, gen: torch.Generator) -> torch.Tensor:
    if not label_words:
        raise SoftPromptError("--init labels needs a classification task with labels (a verbalizer)")
    if len(label_words) > t:
        raise SoftPromptError(
            f"--init labels needs at least one virtual token per label: {len(label_words)} labels, "
            f"--num-virtual-tokens {t}"
        )
    rows = []
    for words in label_words:
        ids = base.encode(words)
        if not ids:
            raise SoftPromptError(f"label words {words!r} encode to no tokens")
        rows.append(_embed_ids(base, torch.tensor(ids)).mean(dim=0))  # multi-token labels: average
    rest = _sample_vocab(base, t - len(rows), gen)
    return torch.cat([torch.stack(rows), rest])


def _text_init(base: BaseModel, t: int, text: str) -> torch.Tensor:
    ids = base.encode(text)
    if not ids:
        raise SoftPromptError('--init text:"..." needs a non-empty text')
    ids = (ids * math.ceil(t / len(ids)))[:t]  # repeat then cut, as PEFT does
    return _embed_ids(base, torch.tensor(ids))
