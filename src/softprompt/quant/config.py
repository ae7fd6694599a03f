"""What a quantised base model is: the mode and, for int4, the group size.

int8 keeps one fp32 scale per output channel (row); int4 keeps a scale and a
zero point per group of `group_size` consecutive inputs of a row. The default
group of 32 is the block size of llama.cpp's Q4_0/Q5_0/Q8_0 and the sub-block
of its K-quants, so a GGUF file re-quantised to int4 keeps its blocks'
boundaries, and it is the finest grouping PyTorch's CPU int4 kernel takes:
the lowest error for 0.25 bytes of scales per weight (64: 0.125, 128: 0.0625,
torchao's default, at a visibly larger error; see docs/quantization.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FieldError

QUANT_MODES = ("none", "int8", "int4")
GROUP_SIZES = (32, 64, 128)


@dataclass(frozen=True)
class Quantization:
    """How the frozen weights are held: "none" (as loaded), "int8" or "int4" (grouped by `group_size`)."""

    mode: str = "none"
    group_size: int = 32

    def __post_init__(self):
        if self.mode not in QUANT_MODES:
            raise FieldError("quantize", f"must be one of {', '.join(QUANT_MODES)}, not {self.mode!r}")
        if isinstance(self.group_size, bool) or self.group_size not in GROUP_SIZES:
            raise FieldError(
                "quantize_group_size", f"must be one of {', '.join(map(str, GROUP_SIZES))}, not {self.group_size!r}"
            )

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def to_dict(self) -> dict:
        return {"mode": self.mode, "group_size": self.group_size}

    @classmethod
    def from_dict(cls, data: dict) -> Quantization:
        if not isinstance(data, dict) or not isinstance(data.get("mode"), str):
            raise FieldError("quantize", f"must be a dict with a 'mode', got {data!r}")
        return cls(mode=data["mode"], group_size=int(data.get("group_size", 32)))

    @classmethod
    def parse(cls, value: str | Quantization | None) -> Quantization:
        """`--quantize` as typed ("int8", "int4", "int4/64", "none"; None means "none")."""
        if isinstance(value, Quantization):
            return value
        if value is None:
            return cls()
        text = str(value).strip().lower()
        mode, _, group = text.partition("/")
        if mode not in QUANT_MODES or (group and (mode != "int4" or not group.isdigit())):
            raise FieldError(
                "quantize", f"must be none, int8 or int4 (int4/64, int4/128 for a coarser grouping), not {value!r}"
            )
        return cls(mode=mode, group_size=int(group) if group else 32)

    def __str__(self) -> str:
        return f"int4/{self.group_size}" if self.mode == "int4" and self.group_size != 32 else self.mode
