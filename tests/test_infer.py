"""Predictor: mixed-prompt batches == one prompt at a time, == PEFT generate, errors per input, cache reuse."""

import pytest
import torch
from peft import PeftModel

from softprompt.data import Example
from softprompt.decode import generate_rows
from softprompt.errors import PromptFileError, SoftPromptError
from softprompt.evaluate import encode_eval_set, predict
from softprompt.forward import pad_batch, prompt_state
from softprompt.infer import ClassifyResult, GenerationConfig, InputError, Predictor, combine_votes
from softprompt.prompts.meta import PromptMeta
from softprompt.prompts.plain import SoftPrompt
from softprompt.prompts.prefix import PrefixPrompt
from softprompt.prompts.prefix_layout import PrefixShape
from softprompt.tasks import ClassifyTask
from softprompt.testing import tiny_base

KINDS = ("gpt2", "llama", "gemma3", "t5")
SENTIMENT = PromptMeta(task="classify", template="Review: {text}\nSentiment:", verbalizer={"pos": "+", "neg": "-"})
TOPIC = PromptMeta(task="classify", template="{text} Topic:", verbalizer={"a": "a", "b": "b", "c": "c"})
ANSWER = PromptMeta(task="generate", template="Q: {text}\nA:")
TEXTS = ("a fine film", "dull and long, far too long for anyone", "ok", "what a ride it was")


def make_prompt(base, t, meta, seed=0):
    g = torch.Generator().manual_seed(seed)
    meta = PromptMeta(**{**meta.__dict__, "base_fingerprint": base.fingerprint})
    return SoftPrompt(torch.randn(t, base.hidden_size, generator=g) * 0.5, meta)


def make_deep(base, t, meta, seed=0):
    g = torch.Generator().manual_seed(seed)
    meta = PromptMeta(**{**meta.__dict__, "base_fingerprint": base.fingerprint})
    shape = PrefixShape.of(base)
    return PrefixPrompt(torch.randn(t, shape.width, generator=g) * 0.5, shape, meta)


def predictor_with_prompts(base, max_batch_size=32):
    predictor = Predictor(base, max_batch_size=max_batch_size)
    predictor.add_prompt("short", make_prompt(base, 5, SENTIMENT, seed=1))
    predictor.add_prompt("long", make_prompt(base, 100, TOPIC, seed=2))
    predictor.add_prompt("gen", make_prompt(base, 7, ANSWER, seed=3))
    return predictor


@pytest.mark.parametrize("kind", KINDS)
def test_mixed_batches_equal_one_prompt_at_a_time(tiny_models, kind):
    predictor = predictor_with_prompts(tiny_models(kind), max_batch_size=5)
    names = ("short", "long")
    requests = [(names[i % 2], text) for i, text in enumerate(TEXTS * 2)]
    mixed = predictor.classify(requests)
    for request, result in zip(requests, mixed):
        alone = predictor.classify([request])[0]
        assert result.label == alone.label
        for label in alone.probs:
            assert result.probs[label] == pytest.approx(alone.probs[label], abs=1e-5)

    gen_requests = [(name, text) for name in ("short", None, "long", "gen") for text in TEXTS[1:]]
    config = GenerationConfig(max_new_tokens=8)
    together = predictor.generate(gen_requests, config)
    assert together == [predictor.generate([r], config)[0] for r in gen_requests]
    # The tiny random T5 mostly generates its pad token (decoded as ""); the others write text.
    assert all(isinstance(t, str) and (t or kind == "t5") for t in together)


@pytest.mark.parametrize("kind", ("gpt2", "llama", "gemma3"))
def test_plain_deep_and_no_prompt_rows_share_batches_and_equal_each_row_alone(tiny_models, kind):
    """Deep prompts of different lengths beside plain prompts and bare rows: each row sees exactly its own prefix."""
    base = tiny_models(kind)
    predictor = Predictor(base, max_batch_size=5)
    predictor.add_prompt("plain", make_prompt(base, 5, SENTIMENT, seed=1))
    predictor.add_prompt("deep", make_deep(base, 9, SENTIMENT, seed=2))
    predictor.add_prompt("deep-topic", make_deep(base, 3, TOPIC, seed=3))
    predictor.add_prompt("deep-gen", make_deep(base, 4, ANSWER, seed=4))
    names = ("plain", "deep", "deep-topic")
    requests = [(names[i % 3], text) for i, text in enumerate(TEXTS * 2)]
    for request, result in zip(requests, predictor.classify(requests)):
        alone = predictor.classify([request])[0]
        assert result.label == alone.label
        assert list(result.probs.values()) == pytest.approx(list(alone.probs.values()), abs=1e-5)
    gen_requests = [(name, text) for name in ("plain", None, "deep", "deep-gen") for text in TEXTS[1:]]
    config = GenerationConfig(max_new_tokens=6)
    assert predictor.generate(gen_requests, config) == [predictor.generate([r], config)[0] for r in gen_requests]
    # eval's scoring (evaluate.py) agrees with the served rows for a deep prompt too.
    task = ClassifyTask.from_meta(SENTIMENT)
    rows = encode_eval_set(base, task, [Example(t, "pos", "x") for t in TEXTS]).rows
    served = [r.label for r in predictor.classify([("deep", t) for t in TEXTS])]
    assert served == predict(base, task, predictor.prompts["deep"], rows, batch_size=3)


def test_a_bf16_model_classifies_and_generates_as_its_fp32_self():
    """The GPU set-up on CPU: bf16 weights and fp32 prompt files; results close to fp32 (same labels, text runs)."""
    base = tiny_base("llama")
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        base.model.to(dtype)
        predictor = predictor_with_prompts(base)
        results[dtype] = predictor.classify([(name, text) for name in ("short", "long") for text in TEXTS])
        texts = predictor.generate([("gen", t) for t in TEXTS], GenerationConfig(max_new_tokens=4))
        assert all(isinstance(t, str) for t in texts)
    for full, half in zip(results[torch.float32], results[torch.bfloat16]):
        for label, p in full.probs.items():
            assert half.probs[label] == pytest.approx(p, abs=0.05)


@pytest.mark.parametrize("verbalizer", [{"pos": "+", "neg": "-"}, {"pos": " good", "neg": " bad", "meh": " so-so"}])
def test_classify_equals_task_scores_on_the_plain_path(tiny_models, verbalizer):
    base = tiny_models("llama")
    meta = PromptMeta(task="classify", template="Review: {text}\nSentiment:", verbalizer=verbalizer)
    prompt = make_prompt(base, 6, meta)
    predictor = Predictor(base)
    predictor.add_prompt("p", prompt)
    results = predictor.classify([("p", t) for t in TEXTS])
    task = ClassifyTask.from_meta(meta)
    for text, result in zip(TEXTS, results):
        batch = pad_batch([list(task.encode(base, text).ids)], base.pad_token_id)
        with torch.no_grad():  # the prompt run in front of the input, as PEFT does
            inline = prompt_state(base, prompt.embeddings, share_prefix=False)
            want = task.label_scores(base, inline, batch).softmax(-1)[0]
        torch.testing.assert_close(torch.tensor(list(result.probs.values())), want, atol=1e-5, rtol=1e-5)
        assert result.label == task.labels[int(want.argmax())]
        assert sum(result.probs.values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_greedy_equals_peft_generate(tmp_path, kind):
    base = tiny_base(kind)
    predictor = Predictor(base)
    for name, meta in (("bare", PromptMeta()), ("gen", ANSWER)):
        prompt = make_prompt(base, 8, meta, seed=4)
        prompt.save(tmp_path / name, base)
        predictor.add_prompt(name, SoftPrompt.load(tmp_path / name, base))
    config = GenerationConfig(max_new_tokens=10)
    for name in ("bare", "gen"):
        peft_model = PeftModel.from_pretrained(tiny_base(kind).model, tmp_path / name)
        texts = predictor.generate([(name, t) for t in TEXTS], config)
        for text, ours in zip(TEXTS, texts):
            task = predictor.task(name)
            ids = list(task.encode(base, text).ids) if task else base.encode(text)
            input_ids = torch.tensor([ids])
            out = peft_model.generate(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=10, do_sample=False
            )
            # A decoder-only model returns input + new tokens; an encoder-decoder the decoder's start + new.
            want = out[0, 1 if base.is_seq2seq else len(ids) :].tolist()
            want = want[: want.index(1)] if 1 in want else want  # up to EOS (id 1 in tiny models)
            (row,) = generate_rows(base, predictor.state(name), pad_batch([ids], base.pad_token_id), config)
            assert row.ids == want
            assert ours == base.tokenizer.decode(want, skip_special_tokens=True)


@pytest.mark.parametrize("verbalizer", [{"pos": "+", "neg": "-"}, {"pos": " good", "neg": " bad", "meh": " so-so"}])
@pytest.mark.parametrize("kind", ("gpt2", "llama", "qwen2", "gemma3", "t5"))
def test_eval_and_serve_give_the_same_scores(tiny_models, kind, verbalizer):
    """`eval`'s batched scoring (evaluate.py) and the Predictor behind `serve` agree on every family.

    The texts are longer than the tiny Gemma3's sliding window and of different
    lengths, so both sides pad; the prompt is inline for T5, a prefix cache otherwise.
    """
    base = tiny_models(kind)
    meta = PromptMeta(task="classify", template="Review: {text}\nSentiment:", verbalizer=verbalizer)
    prompt = make_prompt(base, 6, meta)
    task = ClassifyTask.from_meta(meta)
    rows = encode_eval_set(base, task, [Example(t, "pos", "x") for t in TEXTS]).rows
    assert max(len(r.ids) for r in rows) > (base.family.sliding_window or 0)
    predictor = Predictor(base)
    predictor.add_prompt("p", prompt)
    served = predictor.classify([("p", t) for t in TEXTS])
    assert [r.label for r in served] == predict(base, task, prompt.embeddings, rows, batch_size=3)
    batch = pad_batch([r.ids for r in rows], base.pad_token_id)
    with torch.no_grad():
        scored = task.label_scores(base, prompt_state(base, prompt.embeddings), batch).softmax(-1)
    got = torch.tensor([list(r.probs.values()) for r in served])
    torch.testing.assert_close(got, scored, atol=1e-5, rtol=1e-5)


def test_bad_inputs_get_an_error_and_the_others_are_answered(tiny_models):
    base = tiny_models("llama")
    predictor = predictor_with_prompts(base)
    too_long = "word " * 60  # 300 byte tokens + 5 prompt tokens > the tiny model's 256 positions
    requests = [
        ("short", "good"),
        ("short", ""),
        ("short", "   "),
        ("short", too_long),
        ("missing", "good"),
        (None, "good"),
        ("gen", "good"),
        ("short", 42),
        ("long", "fine"),
    ]
    results = predictor.classify(requests)
    assert [type(r) for r in results] == [ClassifyResult] + [InputError] * 7 + [ClassifyResult]
    messages = [r.message for r in results[1:8]]
    assert messages[0] == messages[1] == "empty text"
    assert "too long" in messages[2] and "256" in messages[2]
    assert "no prompt named 'missing'" in messages[3]
    # A server answers a prompt removed while its request waited as it answers an unknown one: 404, not 422.
    assert [r.status for r in results[1:8]] == [422, 422, 422, 404, 422, 422, 422]
    assert "no classification task" in messages[4] and "no classification task" in messages[5]
    assert "string" in messages[6]

    generated = predictor.generate([("gen", "hi"), ("gen", ""), ("nope", "hi"), (None, too_long)], GenerationConfig(4))
    assert isinstance(generated[0], str) and all(isinstance(g, InputError) for g in generated[1:])


def test_a_prompt_for_another_base_model_is_refused(tiny_models):
    base = tiny_models("llama")
    other = tiny_base("llama", seed=1)  # same shapes, different weights
    prompt = SoftPrompt.initialize(other, 4, "random", meta=PromptMeta(**SENTIMENT.__dict__))
    predictor = Predictor(base)
    with pytest.raises(PromptFileError, match="trained on"):
        predictor.add_prompt("foreign", prompt)
    predictor.add_prompt("forced", prompt, allow_mismatch=True)
    assert isinstance(predictor.classify([("forced", "good")])[0], ClassifyResult)


def test_prompt_keys_values_are_computed_once_and_shared(tiny_models):
    base = tiny_models("gpt2")
    predictor = predictor_with_prompts(base, max_batch_size=2)
    predictor.add_prompt("same-as-short", predictor.prompts["short"])  # same contents: same entry
    for _ in range(3):
        predictor.classify([("short", t) for t in TEXTS] + [("same-as-short", "x"), ("long", "y")])
        predictor.generate([("gen", "hi"), ("short", "yo")], GenerationConfig(max_new_tokens=2))
    stats = predictor.cache_stats
    assert stats["misses"] == 3 and stats["entries"] == 3 and stats["hits"] > 10
    predictor.remove_prompt("gen")
    assert predictor.cache_stats["entries"] == 2
    predictor.remove_prompt("short")  # "same-as-short" still uses the entry
    assert predictor.cache_stats["entries"] == 2
    with pytest.raises(SoftPromptError):
        predictor.remove_prompt("short")


def test_cache_budget_bounds_memory(tiny_models):
    base = tiny_models("gpt2")
    predictor = Predictor(base, cache_bytes=1)  # nothing fits: computed each time, still correct
    predictor.add_prompt("p", make_prompt(base, 5, SENTIMENT))
    first, second = predictor.classify([("p", "good")]), predictor.classify([("p", "good")])
    assert first == second and predictor.cache_stats["entries"] == 0 and predictor.cache_stats["misses"] == 2


def test_ensemble_vote_and_mean(tiny_models):
    base = tiny_models("llama")
    predictor = Predictor(base)
    names = [f"p{i}" for i in range(3)]
    for i, name in enumerate(names):
        predictor.add_prompt(name, make_prompt(base, 4 + i, SENTIMENT, seed=10 + i))
    singles = {name: predictor.classify([(name, t) for t in TEXTS]) for name in names}
    mean = predictor.ensemble(names, TEXTS, how="mean")
    vote = predictor.ensemble(names, TEXTS, how="vote")
    for i in range(len(TEXTS)):
        members = [singles[name][i] for name in names]
        for label in ("pos", "neg"):
            want = sum(m.probs[label] for m in members) / 3
            assert mean[i].probs[label] == pytest.approx(want, abs=1e-5)
        labels = [m.label for m in members]
        assert vote[i].label == max(set(labels), key=labels.count)
        assert vote[i].probs[vote[i].label] >= 2 / 3
    assert isinstance(predictor.ensemble(names, ["good", ""])[1], InputError)
    predictor.add_prompt("topic", make_prompt(base, 4, TOPIC))
    with pytest.raises(SoftPromptError, match="different labels"):
        predictor.ensemble(["p0", "topic"], TEXTS)
    with pytest.raises(SoftPromptError, match="vote, mean"):
        predictor.ensemble(names, TEXTS, how="max")


def test_combine_votes_breaks_ties_by_mean_probability():
    members = [
        ClassifyResult("a", {"a": 0.6, "b": 0.4}),
        ClassifyResult("b", {"a": 0.1, "b": 0.9}),
    ]
    assert combine_votes(members, "vote") == ClassifyResult("b", {"a": 0.5, "b": 0.5})
    mean = combine_votes(members, "mean")
    assert mean.label == "b" and mean.probs["a"] == pytest.approx(0.35)


def test_stream_matches_generate_and_reports_errors_first(tiny_models):
    predictor = predictor_with_prompts(tiny_models("llama"), max_batch_size=2)
    requests = [("gen", "hi"), (None, ""), ("short", "a longer input"), (None, "plain")]
    config = GenerationConfig(max_new_tokens=5)
    steps = list(predictor.stream(requests, config))
    assert isinstance(steps[0][1], InputError) and all(step[1] == "" for step in steps[1:])
    joined = ["".join(step[i] for step in steps) for i in (0, 2, 3)]
    generated = predictor.generate(requests, config)
    assert joined == [generated[i] for i in (0, 2, 3)]


def test_seeded_sampling_does_not_depend_on_the_batch(tiny_models):
    predictor = predictor_with_prompts(tiny_models("gemma3"))
    requests = [("gen", t) for t in TEXTS] + [(None, "hello")]
    config = GenerationConfig(max_new_tokens=8, temperature=0.9, top_k=50, top_p=0.95, seed=5)
    together = predictor.generate(requests, config)
    assert together == [predictor.generate([r], config)[0] for r in requests]
    assert together == predictor.generate(requests, config)


def test_generation_stops_when_the_context_is_full(tiny_models):
    base = tiny_models("gpt2")  # 256 positions
    predictor = Predictor(base)
    predictor.add_prompt("p", make_prompt(base, 10, PromptMeta()))
    text = "x" * (256 - 10 - 3)  # room for exactly 3 new tokens
    steps = list(predictor.stream([("p", text)], GenerationConfig(max_new_tokens=50)))
    assert len(steps) == 3
