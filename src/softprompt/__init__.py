"""softprompt: prompt tuning (Lester et al. 2021) for frozen language models."""

__version__ = "0.1.0"
