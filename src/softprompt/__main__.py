"""`python -m softprompt` (also what `torchrun -m softprompt` runs)."""

import sys

from .cli import main

sys.exit(main())
