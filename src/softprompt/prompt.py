"""Kept so `from softprompt.prompt import SoftPrompt, PromptMeta` goes on working; the code is in `prompts/`."""

from .prompts.base import BasePrompt, check_compatible
from .prompts.hub import prompt_folder
from .prompts.meta import PromptMeta, precision_text, trained_precision
from .prompts.plain import SoftPrompt

__all__ = ["BasePrompt", "PromptMeta", "SoftPrompt", "check_compatible", "precision_text", "prompt_folder"]
__all__ += ["trained_precision"]
