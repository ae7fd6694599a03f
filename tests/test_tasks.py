"""Task formats: encoding, truncation, exact label scores, shared prefix == inline prompt (PEFT's layout)."""

from dataclasses import replace

import pytest
import torch

from softprompt.errors import SoftPromptError
from softprompt.forward import input_logits, pad_batch, prompt_state
from softprompt.prompts.meta import PromptMeta
from softprompt.tasks import ClassifyTask, Encoded, GenerateTask, task_from_meta

CAUSAL = ("gpt2", "llama", "gemma3")
TEXTS = ("the movie was great fun", "dull", "an utterly forgettable film, sadly")
# The tiny tokenizer is byte-level: one character = one token.
SINGLE = ClassifyTask("Review: {text}\nSentiment:", {"good": "y", "bad": "n"})
MULTI = ClassifyTask("Review: {text}\nSentiment:", {"good": " yes", "bad": " no", "meh": " y"})


def prompt_for(base, t=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(t, base.hidden_size, generator=g) - 0.5).requires_grad_(True)


def inline(base, prompt):
    """The prompt run in front of every row, as PEFT does: the reference for the shared prefix cache."""
    return prompt_state(base, prompt, share_prefix=False)


def batch_of(base, task, side, texts=TEXTS):
    return pad_batch([task.encode(base, t).ids for t in texts], base.pad_token_id, side=side)


def brute_force_scores(base, prompt, task, texts=TEXTS):
    """Summed log-probs from full logits of one unpadded sequence per (text, label)."""
    out = []
    for text in texts:
        ids = list(task.encode(base, text).ids)
        row = []
        for toks in task.label_token_ids(base):
            seq = pad_batch([ids + toks], base.pad_token_id)
            logp = input_logits(base, inline(base, prompt), seq)[0].log_softmax(-1)
            row.append(sum(logp[len(ids) - 1 + i, tok] for i, tok in enumerate(toks)))
        out.append(torch.stack(row))
    return torch.stack(out)


def test_encode_keeps_template_and_truncates_only_the_text(tiny_models):
    base = tiny_models("llama")
    plain = SINGLE.encode(base, "abcdefghij")
    assert not plain.truncated and base.tokenizer.decode(plain.ids) == "Review: abcdefghij\nSentiment:"
    assert plain.target is None
    full = len(plain.ids)
    left = SINGLE.encode(base, "abcdefghij", max_tokens=full - 4, truncate="left")
    right = SINGLE.encode(base, "abcdefghij", max_tokens=full - 4, truncate="right")
    assert left.truncated and right.truncated and len(left.ids) == len(right.ids) == full - 4
    assert base.tokenizer.decode(left.ids) == "Review:defghij\nSentiment:"  # the moved leading space went first
    assert base.tokenizer.decode(right.ids) == "Review: abcdef\nSentiment:"
    with pytest.raises(SoftPromptError, match="no room"):
        SINGLE.encode(base, "abc", max_tokens=5)


def bpe_base(tiny_models):
    """The tiny model with a BPE tokenizer that has merges (tokens of several characters, like real ones)."""
    import dataclasses

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    corpus = ["the movie was great fun and the actors were good " * 20, "an utterly forgettable film, sadly " * 20]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "<eos>", "<unk>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    return dataclasses.replace(tiny_models("llama"), tokenizer=tokenizer)


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_long_text_is_cut_before_the_tokenizer_sees_it(tiny_models, monkeypatch, side):
    """Same ids as tokenizing the whole text then truncating, but the tokenizer sees a bounded piece of it."""
    import random

    from softprompt.tasks import base as tasks

    base = bpe_base(tiny_models)
    words = ["the", "movie", "great", "fun", "forgettable", "film,", "sadly", "xqzj", "  ", "\n", "aaaaaaaaaaaa"]
    rng = random.Random(0)
    texts = [" ".join(rng.choice(words) for _ in range(5_000)), "a" * 20_000, "the movie " * 3_000]
    seen = []
    encode = base.encode
    monkeypatch.setattr(base, "encode", lambda text: seen.append(len(text)) or encode(text))
    for text in texts:
        for budget in (20, 64, 300):
            seen.clear()
            cut = SINGLE.encode(base, text, max_tokens=budget, truncate=side)
            assert max(seen) < 64 * budget  # not the whole text
            with monkeypatch.context() as whole:
                whole.setattr(tasks, "_CHARS_PER_TOKEN", 10**9)  # no cut: tokenize everything, then truncate
                assert cut == SINGLE.encode(base, text, max_tokens=budget, truncate=side)
    short = "the movie was great fun"
    assert SINGLE.encode(base, short, max_tokens=300) == SINGLE.encode(base, short)


def test_bad_tasks_are_refused():
    with pytest.raises(SoftPromptError, match="exactly once"):
        ClassifyTask("no slot", {"a": "x", "b": "y"})
    with pytest.raises(SoftPromptError, match="at least 2"):
        ClassifyTask("{text}", {"a": "x"})
    with pytest.raises(SoftPromptError, match="empty answer"):
        ClassifyTask("{text}", {"a": "x", "b": " "})


def test_labels_with_identical_tokens_are_refused(tiny_models):
    with pytest.raises(SoftPromptError, match="same answer tokens"):
        ClassifyTask("{text}:", {"a": "x", "b": "x"}).label_token_ids(tiny_models("llama"))


@pytest.mark.parametrize("kind", CAUSAL)
@pytest.mark.parametrize("side", ["left", "right"])
def test_label_scores_match_brute_force(tiny_models, kind, side):
    base = tiny_models(kind)
    prompt = prompt_for(base).detach()
    with torch.no_grad():
        for task in (SINGLE, MULTI):
            want = brute_force_scores(base, prompt, task)
            batch = batch_of(base, task, side)
            fast = prompt_state(base, prompt)
            got = task.label_scores(base, fast, batch, normalized=True)
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(
                task.label_scores(base, inline(base, prompt), batch, normalized=True), want, atol=1e-5, rtol=1e-5
            )
        # Restricted head: log-probs up to a per-row constant, so the softmax over labels is exact.
        raw = SINGLE.label_scores(base, prompt_state(base, prompt), batch_of(base, SINGLE, side))
        want = brute_force_scores(base, prompt, SINGLE)
        torch.testing.assert_close(raw.softmax(-1), want.softmax(-1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", CAUSAL)
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("task", [SINGLE, MULTI], ids=["single-token", "multi-token"])
def test_fast_loss_and_gradient_equal_plain_path(tiny_models, kind, side, task):
    base = tiny_models(kind)
    rows = [task.encode(base, t, label) for t, label in zip(TEXTS, task.labels)]
    batch, target = task.collate(base, rows, side=side)

    plain_prompt = prompt_for(base)
    plain = task.loss(base, inline(base, plain_prompt), batch, target)
    plain.backward()
    fast_prompt = prompt_for(base)
    fast = task.loss(base, prompt_state(base, fast_prompt), batch, target)
    fast.backward()

    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast_prompt.grad, plain_prompt.grad, atol=1e-5, rtol=1e-4)
    assert fast_prompt.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", CAUSAL)
@pytest.mark.parametrize("side", ["left", "right"])
def test_generate_loss_is_target_only_and_fast_equals_plain(tiny_models, kind, side):
    base = tiny_models(kind)
    task = GenerateTask("Q: {text}\nA:")
    targets = (" yes", " no way", " ok")
    rows = [task.encode(base, t, y) for t, y in zip(TEXTS, targets)]
    assert all(r.target[-1] == base.tokenizer.eos_token_id for r in rows)
    batch, labels = task.collate(base, rows, side=side)

    # Brute force: mean CE of each target token given everything before it, from full logits.
    prompt = prompt_for(base).detach()
    terms = []
    for r in rows:
        logp = input_logits(base, inline(base, prompt), pad_batch([list(r.ids + r.target)], base.pad_token_id))[0]
        logp = logp.log_softmax(-1)
        n = len(r.ids)
        terms += [-logp[n - 1 + i, tok] for i, tok in enumerate(r.target)]
    want = torch.stack(terms).mean()

    plain_prompt, fast_prompt = prompt_for(base), prompt_for(base)
    plain = task.loss(base, inline(base, plain_prompt), batch, labels)
    fast = task.loss(base, prompt_state(base, fast_prompt), batch, labels)
    (plain + fast).backward()
    torch.testing.assert_close(plain, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast_prompt.grad, plain_prompt.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("side", ["left", "right"])
def test_seq2seq_scores_and_losses_equal_one_row_at_a_time(tiny_models, side):
    base = tiny_models("t5")
    prompt = prompt_for(base)
    state = prompt_state(base, prompt)
    rows = [MULTI.encode(base, t, y) for t, y in zip(TEXTS, MULTI.labels)]
    batch, target = MULTI.collate(base, rows, side=side)
    scores = MULTI.label_scores(base, state, batch)
    with torch.no_grad():
        alone = torch.cat([MULTI.label_scores(base, state, MULTI.collate(base, [r])[0]) for r in rows])
    torch.testing.assert_close(scores, alone, atol=1e-5, rtol=1e-5)
    assert scores.shape == (3, 3)
    MULTI.loss(base, state, batch, target).backward()
    assert prompt.grad.abs().sum() > 0
    gen = GenerateTask("{text}")
    rows = [gen.encode(base, t, y) for t, y in zip(TEXTS, ("ok", "fine then", "x"))]
    frozen = prompt_state(base, prompt.detach())
    together = gen.loss(base, frozen, *gen.collate(base, rows, side=side))
    weights = torch.tensor([len(r.target) for r in rows], dtype=torch.float)
    each = torch.stack([gen.loss(base, frozen, *gen.collate(base, [r])) for r in rows])
    torch.testing.assert_close(together, (each * weights).sum() / weights.sum(), atol=1e-5, rtol=1e-5)


def test_meta_round_trip():
    meta = replace(PromptMeta(), **MULTI.meta_fields())
    assert task_from_meta(PromptMeta.from_json(meta.to_json(), where="x")) == MULTI
    gen = GenerateTask("Q: {text}\nA:", target_column="answer")
    meta = replace(meta, **gen.meta_fields())
    assert task_from_meta(meta) == gen and meta.verbalizer is None
    with pytest.raises(SoftPromptError, match="task"):
        task_from_meta(PromptMeta())


def test_encode_refuses_unknown_label(tiny_models):
    with pytest.raises(SoftPromptError, match="not one of"):
        SINGLE.encode(tiny_models("llama"), "x", "other", where="f.csv:3")
    assert isinstance(SINGLE.encode(tiny_models("llama"), "x", "good"), Encoded)
