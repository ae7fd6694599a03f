"""Kept so `from softprompt.reparam import TrainablePrompt` goes on working; the code is `prompts/reparam.py`."""

from .prompts.reparam import TrainablePrompt, build_encoder

__all__ = ["TrainablePrompt", "build_encoder"]
