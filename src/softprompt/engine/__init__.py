"""Continuous batching for generation: sequences join and leave a running batch at every decoding step.

- `engine.py`: `Engine.step()`: the scheduler plans, the runner runs, the scheduler reads back;
- `scheduler.py`: `Scheduler`, who holds a row and what runs (admission within a key/value byte
  budget, chunked prefill, row layout);
- `runner.py`: `ModelRunner`, one planned step of the model (`forward.slot_hidden_states`) and
  per-row sampling;
- `slots.py`: `SlotCache`, the per-row key/value storage the model writes into;
- `sequence.py`: `Sequence` (one row: what it asks and where it has got) and `Delta` (what a step made).

The server's batcher drives it (serve/batcher.py); `decode.py` stays the simpler loop for one fixed batch
(the CLI's generate and predict, and encoder-decoder models, which the engine does not take).
"""

from .engine import Engine, engine_problem
from .sequence import CANCELLED, Delta, Sequence, TokenLogprob

__all__ = ["CANCELLED", "Delta", "Engine", "Sequence", "TokenLogprob", "engine_problem"]
