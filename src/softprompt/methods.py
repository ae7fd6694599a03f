"""Kept so `from softprompt.methods import load_prompt, prompt_class` goes on working; see `prompts/methods.py`."""

from .prompts.methods import PROMPT_CLASSES, load_prompt, prompt_class, register_prompt_method

__all__ = ["PROMPT_CLASSES", "load_prompt", "prompt_class", "register_prompt_method"]
