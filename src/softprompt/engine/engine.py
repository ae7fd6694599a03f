"""The generation engine: iteration-level (continuous) batching over one decoder-only model.

Every call to `step()` is one scheduling decision and at most two model calls,
in the manner of vLLM's V1 scheduler (one token budget per step, running
sequences first, then waiting ones in arrival order):

1. Sequences nobody waits for any more (`cancelled()`) leave; their rows are freed.
2. Waiting sequences are admitted in arrival order while there is a free row
   and their whole key/value need (prompt + input + max new tokens) fits in the
   cache's byte budget. That need is reserved up front, so a running sequence
   never runs out of room and nothing is ever preempted; a sequence that does
   not fit waits (its request may time out), one that could never fit is refused
   by `add`.
3. Decoding rows (each with the token it sampled last) run one token each, in
   one forward over a contiguous range of cache rows.
4. What is left of `step_tokens` goes to the admitted sequences' inputs, in
   arrival order, in chunks: a long input is prefilled over several steps, so
   it never stalls the decoding rows for long. Its prompt prefix (the soft
   prompt's keys/values, plain or deep alike) was copied into its row when it was
   admitted; a sequence whose input is complete gets its first token.
5. Each row picks its next token with its own settings (greedy or sampled with
   its own seeded generator, top-k/top-p, stop strings, limit) and reports a
   `Delta`; finished rows leave.

Each row's tokens sit in its own cache row at their positions (slots.py), and
every forward builds its masks and positions with attention.py from those
positions, so a row's numbers do not depend on which other rows share the step,
how long they are or when they joined: greedy output equals the row run alone,
sliding-window models included. The engine is not thread-safe: one worker
thread calls it (the server's batcher).
"""

from __future__ import annotations

from collections import deque

import torch

from ..attention import attention_masks, positions
from ..decode import next_tokens
from ..errors import SoftPromptError
from ..families import EXPLICIT_MASKS, decoder_body
from ..forward import lm_logits
from ..models import BaseModel
from .sequence import CANCELLED, Delta, Sequence, TokenLogprob
from .slots import SlotCache

Events = list[tuple[Sequence, Delta]]


class Engine:
    """Runs many Sequences together; rows join and leave at every step."""

    def __init__(self, base: BaseModel, *, max_rows: int = 32, max_kv_bytes: int = 1 << 30, step_tokens: int = 512):
        problem = engine_problem(base)
        if problem:
            raise SoftPromptError(problem)
        if max_rows < 1 or step_tokens < max_rows:
            raise SoftPromptError(f"need 1 <= max_rows <= step_tokens, got {max_rows} and {step_tokens}")
        self.base, self.max_rows, self.step_tokens = base, max_rows, step_tokens
        self.cache = SlotCache(
            base.family, dtype=base.dtype, device=base.device, max_bytes=max_kv_bytes, max_rows=max_rows
        )
        self.rows: list[Sequence] = []  # by cache row: [0, decoding) decode, the rest are being prefilled
        self.decoding = 0
        self.prefilling: list[Sequence] = []  # admitted, input not complete, in arrival order
        self.waiting: deque[Sequence] = deque()
        self.pad_id = base.pad_token_id if base.pad_token_id is not None else 0

    # -- what the server sees ---------------------------------------------------------------

    def add(self, seq: Sequence) -> None:
        """Queue `seq`; it joins at a coming step. Refuses one that could never fit in the cache."""
        if not self.cache.fits(1, seq.need):
            held = self.cache.max_bytes // self.cache.token_bytes
            raise SoftPromptError(
                f"the request needs {seq.need} tokens of key/value cache (prompt, input and max_tokens); "
                f"the server's cache holds {held} (--kv-cache-mb): ask for fewer tokens"
            )
        self.waiting.append(seq)

    @property
    def busy(self) -> bool:
        return bool(self.rows or self.waiting)

    @property
    def free_rows(self) -> int:
        """Rows that new sequences could take now (running and waiting ones counted)."""
        return self.max_rows - len(self.rows) - len(self.waiting)

    def abort(self) -> list[Sequence]:
        """Drop every sequence (after a failed step); return them."""
        dropped = [*self.rows, *self.waiting]
        self.rows, self.prefilling, self.waiting, self.decoding = [], [], deque(), 0
        self.cache.clear()
        for seq in dropped:
            seq.row = -1
        return dropped

    @torch.no_grad()
    def step(self) -> Events:
        """One scheduling decision and its forwards; what each sequence produced."""
        events: Events = []
        for seq in [s for s in (*self.rows, *self.waiting) if s.cancelled()]:
            self._remove(seq)
            events.append((seq, Delta(finish=CANCELLED)))
        self._admit()
        decoding = self.rows[: self.decoding]
        chunks = self._prefill_plan(self.step_tokens - len(decoding))
        if decoding:
            hidden = self._forward(slice(0, len(decoding)), decoding, [[seq.pending] for seq in decoding])
            logits = lm_logits(self.base, hidden[:, 0])
            events += [(seq, self._advance(seq, row_logits)) for seq, row_logits in zip(decoding, logits)]
        if chunks:
            events += self._prefill(chunks)
        for seq, delta in events:
            if delta.finish and seq.row >= 0:
                self._remove(seq)
        for seq in [s for s in self.prefilling if s.prefilled]:
            self._promote(seq)
        if not self.rows:
            self.cache.clear()  # idle: give the memory back
        return events

    # -- scheduling ---------------------------------------------------------------------------

    def _admit(self) -> None:
        while self.waiting and len(self.rows) < self.max_rows:
            seq = self.waiting[0]
            length = max(s.need for s in (*self.rows, seq))
            if not self.cache.fits(len(self.rows) + 1, length):
                return  # first come, first served: later (smaller) sequences do not overtake it
            self.waiting.popleft()
            self.cache.reserve(len(self.rows) + 1, length, live=len(self.rows))
            seq.row, seq.length = len(self.rows), seq.prompt_length
            self.rows.append(seq)
            self.prefilling.append(seq)
            if seq.prefix is not None:
                self.cache.write_prefix(seq.row, seq.prefix)

    def _prefill_plan(self, budget: int) -> list[tuple[Sequence, int]]:
        """(sequence, input tokens to run) in arrival order, within `budget` tokens."""
        plan = []
        for seq in self.prefilling:
            if budget <= 0:
                break
            n = min(len(seq.ids) - seq.fed, budget)
            plan.append((seq, n))
            budget -= n
        return plan

    def _promote(self, seq: Sequence) -> None:
        """A prefilled sequence joins the decoding rows (kept contiguous: one view, no copy, per step)."""
        self.prefilling.remove(seq)
        if seq.row != self.decoding:
            self._swap(seq.row, self.decoding)
        self.decoding += 1

    def _remove(self, seq: Sequence) -> None:
        """Free `seq`'s row: the last decoding row takes its place, the last row takes that one's."""
        if seq.row < 0:
            self.waiting.remove(seq)
            return
        hole = seq.row
        if hole < self.decoding:
            self.decoding -= 1
            self._move(self.decoding, hole)
            hole = self.decoding
        else:
            self.prefilling.remove(seq)
        self._move(len(self.rows) - 1, hole)
        self.rows.pop()
        seq.row = -1

    def _move(self, source: int, target: int) -> None:
        if source != target:
            self.cache.copy_row(source, target, self.rows[source].length)
            self.rows[target] = self.rows[source]
            self.rows[target].row = target

    def _swap(self, a: int, b: int) -> None:
        self.cache.swap_rows(a, b, max(self.rows[a].length, self.rows[b].length))
        self.rows[a], self.rows[b] = self.rows[b], self.rows[a]
        self.rows[a].row, self.rows[b].row = a, b

    # -- the model --------------------------------------------------------------------------

    def _forward(self, rows: slice | torch.Tensor, seqs: list[Sequence], tokens: list[list[int]]) -> torch.Tensor:
        """Run `tokens[i]` after sequence i's cached tokens; their hidden states [B, Q, d] (padded to the longest)."""
        device = self.base.device
        width_q = max(len(t) for t in tokens)
        ids = torch.full((len(seqs), width_q), self.pad_id, dtype=torch.long)
        for i, t in enumerate(tokens):
            ids[i, : len(t)] = torch.tensor(t, dtype=torch.long)
        start = torch.tensor([seq.length for seq in seqs], device=device)
        count = torch.tensor([len(t) for t in tokens], device=device)
        # Query j of row i goes at slot start + j; padding queries all go to the row's first free slot
        # (reserved scratch: masked for every real query, overwritten by the row's next real token).
        write_at = start[:, None] + torch.minimum(torch.arange(width_q, device=device), count[:, None])
        width = int(write_at.max()) + 1
        key_pos = positions(torch.ones(len(seqs), width, dtype=torch.long, device=device))
        key_mask = (key_pos < (start + count)[:, None]).long()
        masks = attention_masks(
            self.base.family, key_mask, key_pos, write_at, dtype=self.base.dtype, query_slots=write_at
        )
        self.cache.plan(rows, write_at, width)
        out = decoder_body(self.base.model)(
            input_ids=ids.to(device),
            attention_mask=masks,
            position_ids=write_at,
            past_key_values=self.cache,
            use_cache=True,
        )
        for seq, n in zip(seqs, tokens):
            seq.length += len(n)
        return out.last_hidden_state

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


def engine_problem(base: BaseModel) -> str | None:
    """Why `base` cannot run in the engine (None if it can)."""
    if base.is_seq2seq:
        return f"model '{base.name}' is an encoder-decoder; continuous batching needs a decoder-only model"
    if base.family.attn_implementation not in EXPLICIT_MASKS:
        return (
            f"model '{base.name}' uses the '{base.family.attn_implementation}' attention kernel; continuous batching "
            f"needs one that takes explicit masks ({', '.join(EXPLICIT_MASKS)})"
        )
    return None


def _logprob(logp: torch.Tensor, token: int, top: int) -> TokenLogprob:
    """`token`'s log-prob in `logp` [V], with the `top` most likely tokens."""
    best = logp.topk(top) if top else None
    pairs = () if best is None else tuple(zip(best.indices.tolist(), best.values.tolist()))
    return TokenLogprob(token, float(logp[token]), pairs)
