"""One labelled example: what every reader of data (files, conversations, built-ins) produces."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """One labelled example. `output` is the label (classification) or target (generation)."""

    input: str
    output: str
    where: str  # "file:line", for error messages downstream
