"""The engine's model runner: runs the step the scheduler planned and picks each row's next token.

It decides nothing about who runs (scheduler.py does), as vLLM's V1 model
runner executes a SchedulerOutput and returns what it sampled. Given a
`StepPlan` it:

1. writes each admitted sequence's prompt prefix (the soft prompt's
   keys/values, plain or deep alike) into its row, at positions 0..T-1;
2. runs the decoding rows' last tokens in one forward over a contiguous range
   of cache rows (a view, no copy);
3. runs the planned input chunks in one forward over their (scattered) rows,
   scoring the input tokens where asked; a sequence whose input is complete
   gets its first token;
4. picks each row's next token with its own settings (greedy or sampled with
   its own seeded generator, top-k/top-p, stop strings, limit) and reports a
   `Delta`.

Both forwards are `forward.slot_hidden_states`, the one prompted forward over
the per-row cache: masks and positions come from each row's own slots, so a
row's numbers do not depend on which other rows share the step, how long they
are or when they joined.
"""

from __future__ import annotations

import torch

from ..decode import next_tokens
from ..forward import lm_logits, slot_hidden_states
from ..models import BaseModel
from .scheduler import Events, StepPlan
from .sequence import Delta, Sequence, TokenLogprob
from .slots import SlotCache


class ModelRunner:
    """Runs planned steps of one decoder-only model over its SlotCache."""

    def __init__(self, base: BaseModel, cache: SlotCache):
        self.base, self.cache = base, cache

    def execute(self, plan: StepPlan) -> Events:
        """Run `plan`; what each decoding or prefilled sequence produced (in that order)."""
        for seq in plan.admitted:
            if seq.prefix is not None:
                self.cache.write_prefix(seq.row, seq.prefix)
        events: Events = []
        if plan.decoding:
            hidden = self._forward(slice(0, len(plan.decoding)), plan.decoding, [[s.pending] for s in plan.decoding])
            logits = lm_logits(self.base, hidden[:, 0])
            events += [(seq, self._advance(seq, row_logits)) for seq, row_logits in zip(plan.decoding, logits)]
        if plan.chunks:
            events += self._prefill(plan.chunks)
        return events

    def _forward(self, rows: slice | torch.Tensor, seqs: list[Sequence], tokens: list[list[int]]) -> torch.Tensor:
        """Run `tokens[i]` after sequence i's cached tokens; their hidden states [B, Q, d] (padded to the longest)."""
        self.cache.use_rows(rows)
        hidden = slot_hidden_states(self.base, self.cache, tokens, [seq.length for seq in seqs])
        for seq, n in zip(seqs, tokens):
            seq.length += len(n)
        return hidden

    def _prefill(self, chunks: list[tuple[Sequence, int]]) -> Events:
        seqs = [seq for seq, _ in chunks]
        rows = torch.tensor([seq.row for seq in seqs], device=self.base.device)
        hidden = self._forward(rows, seqs, [seq.ids[seq.fed : seq.fed + n] for seq, n in chunks])
        done = []
        for i, (seq, n) in enumerate(chunks):
            if seq.prompt_logprobs:
                self._score_input(seq, hidden[i, :n])
            seq.fed += n
            if seq.prefilled:
                done.append((seq, hidden[i, n - 1]))
        if not done:
            return []
        logits = lm_logits(self.base, torch.stack([h for _, h in done]))
        return [(seq, self._advance(seq, row_logits, first=True)) for (seq, _), row_logits in zip(done, logits)]

    def _score_input(self, seq: Sequence, hidden: torch.Tensor) -> None:
        """Log-probs of the input tokens that the positions in `hidden` (the chunk just run) predict."""
        logp = lm_logits(self.base, hidden).float().log_softmax(-1)
        if seq.fed == 0:  # nothing the caller sees predicts the first input token
            seq.scored.append(TokenLogprob(seq.ids[0], None))
        for j in range(logp.shape[0]):
            target = seq.fed + j + 1
            if target < len(seq.ids):
                seq.scored.append(_logprob(logp[j], seq.ids[target], seq.logprobs or 0))

    def _advance(self, seq: Sequence, logits: torch.Tensor, *, first: bool = False) -> Delta:
        """Pick `seq`'s next token from its logits [V]; what it adds."""
        delta = Delta()
        if first:
            delta.input_ids, delta.virtual_tokens = seq.ids, seq.prompt_length
            delta.prompt = list(seq.scored) if seq.prompt_logprobs else None
        if not seq.text.done:  # max_new_tokens 0: the input was only scored
            token = int(next_tokens(logits[None], seq.config, None if seq.generator is None else [seq.generator]))
            if seq.logprobs is not None:
                delta.tokens.append(_logprob(logits.float().log_softmax(-1), token, seq.logprobs))
            else:
                delta.tokens.append(TokenLogprob(token, None))
            delta.text = seq.text.push(token)
            seq.pending = token
        delta.finish = seq.text.reason if seq.text.done else None
        return delta


def _logprob(logp: torch.Tensor, token: int, top: int) -> TokenLogprob:
    """`token`'s log-prob in `logp` [V], with the `top` most likely tokens."""
    best = logp.topk(top) if top else None
    pairs = () if best is None else tuple(zip(best.indices.tolist(), best.values.tolist()))
    return TokenLogprob(token, float(logp[token]), pairs)
