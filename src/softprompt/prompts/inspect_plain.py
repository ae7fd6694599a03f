"""Look inside a soft prompt: what each virtual token is close to in the vocabulary.

For every virtual token we report
- its nearest vocabulary tokens by cosine similarity (top k, with scores),
- its L2 norm and where that norm falls in the distribution of vocabulary norms,
- how far it moved from its initial value, when the prompt file keeps it.

Lester et al. (2021, section 7) found that the nearest neighbours of trained
prompt tokens cluster around the class-label words and words close to them.
`label_clustering` measures exactly that: how many virtual tokens have a label
word, or one of the label words' own nearest neighbours (the "label
neighbourhood"), among their top-k neighbours; and the mean cosine similarity of
prompt tokens to the label words against their mean similarity to frequent
tokens (the baseline a random direction would get).

Comparisons happen in the space the prompt lives in: the model's input
embeddings as `BaseModel.embed` returns them (Gemma scales them, for one).
This is the plain prompt's `inspect` hook (`SoftPrompt.inspect`); a deep prompt lives in
every layer's attention space instead and has its own (inspect_prefix.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..errors import SoftPromptError
from ..models import BaseModel
from .initialize import frequent_token_ids
from .meta import PromptMeta
from .vocab import cosine_matrix, token_text, vocabulary_embeddings

if TYPE_CHECKING:
    from .base import BasePrompt

# How many of each label word's own nearest neighbours count as "close to the label".
LABEL_NEIGHBOURHOOD = 20


@dataclass
class Neighbour:
    token_id: int
    token: str  # the decoded token, e.g. " positive"
    cosine: float


@dataclass
class VirtualToken:
    index: int
    norm: float
    norm_percentile: float  # % of (non-zero) vocabulary embeddings with a smaller or equal norm
    neighbours: list[Neighbour]
    moved: float | None = None  # L2 distance from the initial value
    moved_relative: float | None = None  # moved / norm of the initial value
    cosine_to_initial: float | None = None
    near_label: str | None = None  # the label whose neighbourhood holds one of the neighbours


@dataclass
class LabelWord:
    label: str
    words: str
    token_ids: list[int]
    best_cosine: float  # highest cosine similarity of any virtual token to this label word
    best_token: int  # which virtual token that is


@dataclass
class Inspection:
    prompt_shape: tuple[int, int]
    top_k: int
    vocab_size: int
    vocab_norm: dict[str, float]  # min, p5, median, mean, p95, max
    tokens: list[VirtualToken]
    labels: list[LabelWord] = field(default_factory=list)
    clustering: dict[str, float | int | None] = field(default_factory=dict)
    init: str | None = None  # how the prompt was initialised, when known
    summary: str = ""
    projection: dict | None = None  # projection.ProjectionScore as a dict, when scored on data

    def nearest_token_ids(self) -> list[int]:
        """Each virtual token's nearest vocabulary token: the prompt's readable projection."""
        return [tok.neighbours[0].token_id for tok in self.tokens]

    def nearest_tokens(self, k: int) -> list[list[str]]:
        """Each virtual token's `k` nearest vocabulary tokens, as text."""
        return [[n.token for n in tok.neighbours[:k]] for tok in self.tokens]

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        return format_text(self)

    def plot(self, prompt: BasePrompt, base: BaseModel, path: str | Path) -> Path:
        """Three panels: 2-D projection, norms against the vocabulary, cosine heat map (plots.py)."""
        from .plots import plot_embeddings  # matplotlib is an extra: loaded only to draw

        return plot_embeddings(prompt, base, self, path)


# -- computing --------------------------------------------------------------------


def label_token_ids(base: BaseModel, verbalizer: dict[str, str] | None) -> dict[str, list[int]]:
    """label -> token ids of its answer words (multi-token answers keep all their tokens)."""
    out = {}
    for label, words in (verbalizer or {}).items():
        ids = base.encode(words)
        if ids:
            out[label] = ids
    return out


def inspect_embeddings(prompt: BasePrompt, base: BaseModel, *, top_k: int = 5) -> Inspection:
    """Nearest tokens, norms, drift and label clustering of a prompt with input vectors, in `base`'s vocabulary."""
    emb = prompt.input_embeddings()
    if emb is None:
        raise SoftPromptError(f"a {prompt.METHOD} prompt has no input vectors to relate to the vocabulary")
    if emb.shape[1] != base.hidden_size:
        raise SoftPromptError(
            f"the prompt has dimension {emb.shape[1]} but model '{base.name}' has hidden size {base.hidden_size}"
        )
    vocab = vocabulary_embeddings(base)
    if not 1 <= top_k <= vocab.shape[0]:
        raise SoftPromptError(f"--top-k must be between 1 and the vocabulary size {vocab.shape[0]}, got {top_k}")
    emb = emb.detach().float().cpu()
    sims = cosine_matrix(emb, vocab)  # [T, V]
    top = sims.topk(top_k, dim=1)
    vocab_norms = vocab.norm(dim=1)
    vocab_norms = vocab_norms[vocab_norms > 0]  # all-zero rows (padding_idx) are not words
    norms = emb.norm(dim=1)
    sorted_norms = vocab_norms.sort().values
    percentiles = torch.searchsorted(sorted_norms, norms, right=True).float() / len(sorted_norms) * 100

    tokens = []
    for i in range(emb.shape[0]):
        neighbours = [
            Neighbour(int(j), token_text(base, int(j)), round(float(s), 4))
            for s, j in zip(top.values[i], top.indices[i])
        ]
        tokens.append(
            VirtualToken(index=i, norm=float(norms[i]), norm_percentile=float(percentiles[i]), neighbours=neighbours)
        )
    _add_drift(tokens, emb, prompt.initial)
    labels, clustering = _label_clustering(base, prompt.meta, vocab, sims, top.indices, tokens)
    inspection = Inspection(
        prompt_shape=(emb.shape[0], emb.shape[1]),
        top_k=top_k,
        vocab_size=vocab.shape[0],
        vocab_norm=_norm_summary(vocab_norms),
        tokens=tokens,
        labels=labels,
        clustering=clustering,
        init=prompt.meta.init,
    )
    inspection.summary = summary_line(inspection)
    return inspection


def _norm_summary(norms: torch.Tensor) -> dict[str, float]:
    q = torch.quantile(norms, torch.tensor([0.05, 0.5, 0.95]))
    return {
        "min": float(norms.min()),
        "p5": float(q[0]),
        "median": float(q[1]),
        "mean": float(norms.mean()),
        "p95": float(q[2]),
        "max": float(norms.max()),
    }


def _add_drift(tokens: list[VirtualToken], emb: torch.Tensor, initial: torch.Tensor | None) -> None:
    # A file's initial tensor may be missing, or from a prompt of another length (file: init).
    if initial is None or initial.shape != emb.shape:
        return
    initial = initial.float().cpu()
    moved = (emb - initial).norm(dim=1)
    start_norm = initial.norm(dim=1).clamp(min=1e-12)
    cos = F.cosine_similarity(emb, initial, dim=1)
    for tok, m, n, c in zip(tokens, moved, start_norm, cos):
        tok.moved, tok.moved_relative, tok.cosine_to_initial = float(m), float(m / n), float(c)


def _label_clustering(
    base: BaseModel,
    meta: PromptMeta,
    vocab: torch.Tensor,
    sims: torch.Tensor,
    top_ids: torch.Tensor,
    tokens: list[VirtualToken],
) -> tuple[list[LabelWord], dict]:
    label_ids = label_token_ids(base, meta.verbalizer)
    if not label_ids:
        return [], {}
    labels = []
    for label, ids in label_ids.items():
        per_token = sims[:, ids].max(dim=1).values  # [T]: best-matching token of the answer words
        labels.append(
            LabelWord(
                label=label,
                words=meta.verbalizer[label],
                token_ids=ids,
                best_cosine=float(per_token.max()),
                best_token=int(per_token.argmax()),
            )
        )
    neighbourhood = label_neighbourhood(vocab, label_ids)
    exact = set(j for ids in label_ids.values() for j in ids)
    with_label = with_neighbourhood = 0
    for tok, ids in zip(tokens, top_ids.tolist()):
        hits = [neighbourhood[j] for j in ids if j in neighbourhood]
        tok.near_label = hits[0] if hits else None
        with_neighbourhood += bool(hits)
        with_label += any(j in exact for j in ids)
    all_label_ids = torch.tensor(sorted(exact))
    frequent = frequent_token_ids(base, min(5000, vocab.shape[0]))
    t = len(tokens)
    clustering = {
        "tokens_with_label_word": with_label,
        "tokens_with_label_neighbourhood": with_neighbourhood,
        "num_tokens": t,
        "label_neighbourhood_size": len(neighbourhood),
        # What a random token would score: the neighbourhood's share of the vocabulary, over top-k draws.
        "chance_rate": 1 - (1 - len(neighbourhood) / vocab.shape[0]) ** top_ids.shape[1],
        "mean_cosine_to_labels": float(sims[:, all_label_ids].mean()),
        "mean_cosine_to_frequent": float(sims[:, frequent].mean()),
    }
    return labels, clustering


def label_neighbourhood(vocab: torch.Tensor, label_ids: dict[str, list[int]]) -> dict[int, str]:
    """token id -> label, for each label's tokens and their LABEL_NEIGHBOURHOOD nearest neighbours.

    A token near several labels (" positive" is close to " negative") belongs
    to the label it is most similar to, so a label's own words always map to it.
    """
    names = list(label_ids)
    members = set()
    for ids in label_ids.values():
        near = cosine_matrix(vocab[ids], vocab).topk(min(LABEL_NEIGHBOURHOOD, vocab.shape[0]), dim=1).indices
        members.update(near.flatten().tolist(), ids)
    members_t = torch.tensor(sorted(members))
    # [M, labels]: similarity of each member to its closest token of each label's words
    closeness = torch.stack(
        [cosine_matrix(vocab[members_t], vocab[ids]).max(dim=1).values for ids in label_ids.values()], dim=1
    )
    owner = closeness.argmax(dim=1).tolist()
    return {j: names[o] for j, o in zip(members_t.tolist(), owner)}


def summary_line(inspection: Inspection) -> str:
    """One sentence: do the neighbours cluster around the label words?"""
    c = inspection.clustering
    if not c:
        return "no verbalizer in the prompt's metadata: cannot relate its tokens to label words"
    t, k = c["num_tokens"], inspection.top_k
    rate = c["tokens_with_label_neighbourhood"] / t
    lift = c["mean_cosine_to_labels"] - c["mean_cosine_to_frequent"]
    hits = c["tokens_with_label_neighbourhood"]
    if (rate >= 0.25 and rate > 2 * c["chance_rate"]) or lift > 0.05:
        verdict = "neighbours cluster around the label words"
    elif hits >= 2 and rate > 3 * c["chance_rate"]:
        verdict = "some neighbours sit near the label words"
    else:
        verdict = "no clustering around the label words"
    caveat = " (label init started tokens on the label words)" if inspection.init == "labels" else ""
    return (
        f"{verdict}{caveat}: {c['tokens_with_label_word']}/{t} virtual tokens have a label word and "
        f"{c['tokens_with_label_neighbourhood']}/{t} a word near one among their top-{k} neighbours "
        f"(chance {c['chance_rate']:.1%}); mean cosine to label words {c['mean_cosine_to_labels']:.3f} "
        f"vs {c['mean_cosine_to_frequent']:.3f} to frequent tokens"
    )


# -- showing ----------------------------------------------------------------------


def format_text(inspection: Inspection) -> str:
    t, d = inspection.prompt_shape
    vn = inspection.vocab_norm
    lines = [
        f"prompt: {t} virtual tokens x {d} dimensions; vocabulary: {inspection.vocab_size} tokens, "
        f"embedding norms median {vn['median']:.3f} (5%-95%: {vn['p5']:.3f}-{vn['p95']:.3f})",
    ]
    has_drift = any(tok.moved is not None for tok in inspection.tokens)
    header = f"{'tok':>4}  {'norm':>7}  {'pctile':>6}"
    header += f"  {'moved':>7}  {'cos0':>5}" if has_drift else ""
    lines.append(header + f"  nearest {inspection.top_k} tokens (cosine)")
    for tok in inspection.tokens:
        row = f"{tok.index:>4}  {tok.norm:>7.3f}  {tok.norm_percentile:>5.1f}%"
        if has_drift:
            row += f"  {tok.moved:>7.3f}  {tok.cosine_to_initial:>5.2f}" if tok.moved is not None else " " * 16
        shown = "  ".join(f"{n.token!r} {n.cosine:.2f}" for n in tok.neighbours)
        lines.append(f"{row}  {shown}" + (f"   <- near '{tok.near_label}'" if tok.near_label else ""))
    if not has_drift:
        lines.append("(the prompt file holds no initial value: distance moved unknown)")
    for lab in inspection.labels:
        lines.append(
            f"label {lab.label!r} ({lab.words!r}): closest virtual token {lab.best_token} "
            f"at cosine {lab.best_cosine:.3f}"
        )
    lines.append(inspection.summary)
    if inspection.projection is not None:
        lines.append(projection_line(inspection.projection))
    return "\n".join(lines)


def projection_line(score: dict) -> str:
    """A nearest-token projection's score (projection.ProjectionScore as a dict) in one sentence."""
    m, split = score["metric"], score.get("split")
    where = f"{split} " if split else ""
    hard, soft = score["hard"][m], score["soft"][m]
    return (
        f"nearest-token projection {score['text']!r} as a hard prompt: {where}{m} {hard:.4f} "
        f"against {soft:.4f} for the soft prompt ({hard - soft:+.4f}) on {score['n']} {where}examples"
    )
