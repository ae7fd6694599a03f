"""Kept so `from softprompt.prefix import PrefixPrompt` goes on working; the code is `prompts/prefix.py`."""

from .prompts.prefix import PrefixPrompt
from .prompts.prefix_layout import PrefixShape, prefix_of_embeddings

__all__ = ["PrefixPrompt", "PrefixShape", "prefix_of_embeddings"]
