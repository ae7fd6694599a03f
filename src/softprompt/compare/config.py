"""What a comparison runs: methods, budget and the fixed subset sizes that keep it fast.

The defaults are sized so that the five original methods finished in about 20 minutes
on a 2-core CPU with smollm2-135m on rotten-tomatoes (prefix tuning and P-tuning add
two prompt-tuning-sized runs): every trained method gets the
same number of optimiser steps on the same batches; accuracy is measured on the
first `test_size` examples of the fixed test split; forgetting on a fixed
number of tokens of general English and the first `second_task_size` test
examples of a second task.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..errors import FieldError
from ..optim import OPTIMIZERS
from ..prompts.registry import VARIANTS
from ..train_config import TrainConfig
from ..typecheck import check_field_types

# models.DEFAULT_MODEL, not imported: models imports torch, and `softprompt --help` builds this
# command's flags from CompareConfig's defaults without loading torch (a test checks they agree).
DEFAULT_MODEL = "smollm2-135m"

# softprompt's prompt methods (prompts/registry.VARIANTS): the TrainConfig settings that make each (besides the
# shared budget); each trains at its method's recipe unless a compare flag sets a value for all of them.
PROMPT_METHODS = {name: {"method": v.method, "reparam": v.reparam, **v.settings} for name, v in VARIANTS.items()}
METHODS = ("zero-shot", "few-shot", *PROMPT_METHODS, "lora", "full-finetune")
TRAINED = (*PROMPT_METHODS, "lora", "full-finetune")
TITLES = {
    "zero-shot": "Hard prompt, zero-shot",
    "few-shot": "Hard prompt, few-shot",
    **{name: v.title for name, v in VARIANTS.items()},
    "lora": "LoRA (PEFT)",
    "full-finetune": "Full fine-tuning",
}
# CompareConfig fields that, when set, override every prompt method's recipe, and the TrainConfig field each sets.
PROMPT_OVERRIDES = {"num_virtual_tokens": "num_virtual_tokens", "prompt_optimizer": "optimizer", "prompt_lr": "lr"}


def full_finetune_refusal(quantize: str) -> str:
    """The one sentence that says why full fine-tuning is not run on a quantised base model."""
    return (
        f"Full fine-tuning is not run on a quantised base model (--quantize {quantize}): it trains every weight, and "
        "quantised weights are frozen integers; compare it with --quantize none."
    )


def parse_methods(text: str) -> tuple[str, ...]:
    """'zero-shot,lora' -> ('zero-shot', 'lora'), in the canonical order; refuses unknown names."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise FieldError(
            "methods", f": unknown {', '.join(unknown) or '(none given)'}; choose from {','.join(METHODS)}"
        )
    return tuple(m for m in METHODS if m in names)


@dataclass
class CompareConfig:
    """Settings of one comparison; every field but `methods`, `device` and `keep_weights` decides the numbers."""

    model: str = DEFAULT_MODEL
    data: str = "rotten-tomatoes"  # built-in dataset name or a data file (then give template and labels)
    template: str | None = None  # for data files: e.g. "Review: {text}\nSentiment:"
    labels: dict[str, str] | None = None  # for data files: label -> answer words
    methods: tuple[str, ...] = METHODS
    steps: int = 50  # optimiser steps of every trained method (the same budget for each; train's is longer)
    batch_size: int = TrainConfig.batch_size
    seed: int = 0
    # The seed of a data file's 90/10 split (None: `seed`). Several seeds share one split, so
    # every seed scores the same test examples and the methods' gaps stay paired.
    split_seed: int | None = None
    test_size: int = 300  # first N examples of the test split
    eval_batch_size: int = 32
    max_input_tokens: int | None = None  # None: the built-in dataset's hint
    few_shot_k: int = 4  # in-context examples, balanced over labels
    instruction: str | None = None  # hard-prompt instruction; None: "Classify ... Answer with one of: ..."
    # The prompt methods' T, optimiser and LR: None = each method's own recipe (prompts/registry.py).
    num_virtual_tokens: int | None = None
    prompt_optimizer: str | None = None  # "adafactor" = the paper's (constant LR 0.3)
    prompt_lr: float | None = None
    lora_r: int = 8
    lora_alpha: int = 16
    lora_lr: float = 1e-3  # AdamW
    full_lr: float = 2e-5  # AdamW
    warmup_fraction: float = 0.1  # linear warmup of LoRA and full fine-tuning, then linear decay
    perplexity_tokens: int = 4096  # tokens of general English scored for perplexity
    perplexity_window: int = 512  # scored in independent windows of this many tokens
    second_task: str | None = "bbc-news"  # built-in dataset for forgetting; None: skip
    second_task_size: int = 100
    second_task_max_tokens: int = 160
    device: str = "cpu"
    # The frozen base model's precision (none, int8, int4); LoRA then trains fp32 adapters over the quantised
    # linears (QLoRA), and full fine-tuning is refused (`refused`).
    quantize: str = "none"
    keep_weights: bool = False  # keep the fully fine-tuned model's files (hundreds of MB) in --out

    def __post_init__(self):
        if not isinstance(self.methods, (str, list, tuple)):
            raise FieldError("methods", f"must be comma-separated method names, got {self.methods!r}")
        self.methods = parse_methods(self.methods if isinstance(self.methods, str) else ",".join(self.methods))
        check_field_types(self)
        at_least_one = (
            "steps", "batch_size", "test_size", "eval_batch_size", "num_virtual_tokens", "lora_r", "perplexity_tokens",
            "second_task_size", "second_task_max_tokens",
        )  # fmt: skip
        for name in at_least_one:
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise FieldError(name, f"must be at least 1, got {getattr(self, name)}")
        if self.few_shot_k < 0:
            raise FieldError("few_shot_k", f"must be >= 0, got {self.few_shot_k}")
        if self.perplexity_window < 2:
            raise FieldError("perplexity_window", f"must be at least 2, got {self.perplexity_window}")
        if self.prompt_optimizer is not None and self.prompt_optimizer not in OPTIMIZERS:
            raise FieldError(
                "prompt_optimizer", f"must be one of {', '.join(OPTIMIZERS)}, got {self.prompt_optimizer!r}"
            )
        for name in ("prompt_lr", "lora_lr", "full_lr"):
            lr = getattr(self, name)
            if lr is not None and not (lr > 0 and math.isfinite(lr)):
                raise FieldError(name, f"must be a positive number, got {lr}")
        if not 0 <= self.warmup_fraction < 1:
            raise FieldError("warmup_fraction", f"must be in [0, 1), got {self.warmup_fraction}")
        if self.quantize != "none":
            from ..quant import Quantization  # imports torch: only when a quantised model is asked for

            self.quantize = str(Quantization.parse(self.quantize))
        if not self.runnable_methods:
            raise FieldError("methods", f"leaves nothing to run: {' '.join(self.refused.values())}")

    @property
    def refused(self) -> dict[str, str]:
        """Methods asked for that cannot run on this base model, each with the sentence that says why."""
        if self.quantize == "none" or "full-finetune" not in self.methods:
            return {}
        return {"full-finetune": full_finetune_refusal(self.quantize)}

    @property
    def runnable_methods(self) -> tuple[str, ...]:
        return tuple(m for m in self.methods if m not in self.refused)

    def prompt_overrides(self) -> dict[str, object]:
        """The TrainConfig settings a flag set for every prompt method (the rest come from each method's recipe)."""
        return {key: getattr(self, name) for name, key in PROMPT_OVERRIDES.items() if getattr(self, name) is not None}

    def method_settings(self, method: str) -> dict[str, object]:
        """The TrainConfig settings that make prompt method `method` here, besides the shared budget."""
        return {**PROMPT_METHODS[method], **self.prompt_overrides()}

    @property
    def warmup_steps(self) -> int:
        return int(self.steps * self.warmup_fraction)

    def fingerprint(self) -> dict:
        """The settings a saved result depends on: resume reuses a method's result only if these match."""
        raw = asdict(self)
        for key in ("methods", "device", "keep_weights"):
            raw.pop(key)
        if raw["quantize"] == "none":  # results saved before --quantize existed were measured at full precision
            raw.pop("quantize")
        return raw

    def differences(self, saved: dict) -> list[str]:
        mine = self.fingerprint()
        keys = sorted(set(mine) | set(saved))
        return [f"{k}: saved {saved.get(k)!r}, now {mine.get(k)!r}" for k in keys if saved.get(k) != mine.get(k)]
