"""`python -m softprompt` (also what `torchrun -m softprompt` runs)."""

from .cli import entry

entry()
