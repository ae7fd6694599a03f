"""The engine against each row run alone (decode.py's loop): rows joining mid-flight, mixed prompts and settings."""

from __future__ import annotations

import pytest
import torch

from softprompt.decode import GenerationConfig, eos_token_ids, generate_texts
from softprompt.engine import CANCELLED, Engine, Sequence
from softprompt.errors import SoftPromptError
from softprompt.forward import input_logits, next_token_logits, pad_batch, prompt_state
from softprompt.prompts.plain import SoftPrompt
from softprompt.prompts.prefix import PrefixPrompt

KINDS = ("gpt2", "llama", "gemma3")  # gemma3: a sliding window shorter than the inputs, and a softcap
TEXTS = [
    "hello there",
    "a much longer input, longer than the sliding window and than one prefill chunk",
    "x",
    "some middle-sized text",
]


def states(base):
    """A plain prompt, a deep prompt, no prompt, and a plain prompt of another length."""
    plain = prompt_state(base, SoftPrompt.initialize(base, 4, "random", seed=1)).detach()
    deep = prompt_state(base, PrefixPrompt.initialize(base, 5, "random", seed=2)).detach()
    other = prompt_state(base, SoftPrompt.initialize(base, 7, "random", seed=3)).detach()
    return [plain, deep, None, other]


def alone(base, state, text: str, config: GenerationConfig) -> str:
    return generate_texts(base, state, pad_batch([base.encode(text)], base.pad_token_id), config)[0]


def sequence(base, state, text: str, config: GenerationConfig, **kwargs) -> Sequence:
    return Sequence(
        state, base.encode(text), config, config.max_new_tokens, eos_token_ids(base), base.tokenizer, **kwargs
    )


def run(engine: Engine, arrivals: dict[int, list[Sequence]]) -> dict[Sequence, str]:
    """Step until idle; sequences in arrivals[k] are added before step k. Returns each one's text."""
    texts: dict[Sequence, str] = {s: "" for group in arrivals.values() for s in group}
    step = 0
    while engine.busy or step <= max(arrivals):
        for seq in arrivals.get(step, []):
            engine.add(seq)
        for seq, delta in engine.step():
            texts[seq] += delta.text
        step += 1
        assert step < 500, "the engine does not finish"
    return texts


@pytest.mark.parametrize("kind", KINDS)
def test_greedy_rows_joining_mid_flight_equal_each_row_alone(tiny_models, kind):
    base = tiny_models(kind)
    configs = [GenerationConfig(12), GenerationConfig(5, stop=("e",)), GenerationConfig(9), GenerationConfig(3)]
    seqs = [sequence(base, s, t, c) for s, t, c in zip(states(base), TEXTS, configs)]
    # Small step budget: the long input is prefilled over several steps while the others decode.
    engine = Engine(base, max_rows=4, step_tokens=8)
    texts = run(engine, {0: [seqs[0]], 2: [seqs[1]], 3: [seqs[2]], 7: [seqs[3]]})
    for seq, state, text, config in zip(seqs, states(base), TEXTS, configs):
        assert texts[seq] == alone(base, state, text, config)
    assert not engine.rows and engine.cache.nbytes == 0  # idle: memory given back


@pytest.mark.parametrize("kind", KINDS)
def test_seeded_sampling_gives_the_same_text_whatever_else_is_in_the_batch(tiny_models, kind):
    base = tiny_models(kind)
    sampled = GenerationConfig(10, temperature=0.9, top_k=50, top_p=0.9, seed=11)
    hot = GenerationConfig(8, temperature=1.5, seed=5)
    first = sequence(base, states(base)[0], TEXTS[0], sampled)
    others = [sequence(base, states(base)[1], TEXTS[1], hot), sequence(base, None, TEXTS[3], GenerationConfig(6))]
    texts = run(Engine(base, max_rows=3, step_tokens=16), {0: [others[0]], 1: [first], 2: [others[1]]})
    assert texts[first] == alone(base, states(base)[0], TEXTS[0], sampled)
    assert texts[others[0]] == alone(base, states(base)[1], TEXTS[1], hot)
    # Per-row seeds: the same request with another seed is another text (the seed is used, not shared).
    reseeded = sequence(base, states(base)[0], TEXTS[0], sampled, seed=12)
    assert run(Engine(base), {0: [reseeded]})[reseeded] != texts[first]


def test_cancelled_rows_leave_at_the_next_step_and_the_others_stay_exact(tiny_models):
    base = tiny_models("llama")
    gone = {"flag": False}
    config = GenerationConfig(10)
    keep = [sequence(base, s, t, config) for s, t in zip(states(base), TEXTS)]
    leaver = sequence(base, states(base)[0], "to be cancelled", GenerationConfig(50), cancelled=lambda: gone["flag"])
    engine = Engine(base, max_rows=5, step_tokens=12)
    for seq in [leaver, *keep[:2]]:
        engine.add(seq)
    texts = {seq: "" for seq in [leaver, *keep]}
    for step in range(40):
        if step == 3:
            gone["flag"] = True
            for seq in keep[2:]:
                engine.add(seq)
        events = engine.step()
        for seq, delta in events:
            texts[seq] += delta.text
        if step == 3:
            assert (leaver, CANCELLED) in [(s, d.finish) for s, d in events] and leaver not in engine.rows
    assert not engine.busy
    for seq, state, text in zip(keep, states(base), TEXTS):
        assert texts[seq] == alone(base, state, text, config)


def test_the_cache_stays_within_its_bytes_and_what_does_not_fit_waits(tiny_models):
    base = tiny_models("llama")
    config = GenerationConfig(20)
    probe = Engine(base)
    need = sequence(base, None, TEXTS[1], config).need
    budget = 2 * need * probe.cache.token_bytes  # room for two such rows, not three
    engine = Engine(base, max_rows=8, max_kv_bytes=budget, step_tokens=64)
    seqs = [sequence(base, None, TEXTS[1], config) for _ in range(3)]
    for seq in seqs:
        engine.add(seq)
    texts = {seq: "" for seq in seqs}
    most = 0
    while engine.busy:
        for seq, delta in engine.step():
            texts[seq] += delta.text
        most = max(most, len(engine.rows))
        assert engine.cache.nbytes <= budget
    assert most == 2  # the third waited for a free row's memory, then ran
    assert set(texts.values()) == {alone(base, None, TEXTS[1], config)}
    with pytest.raises(SoftPromptError, match="--kv-cache-mb"):
        engine.add(sequence(base, None, TEXTS[1] * 3, config))


def test_decoding_rows_read_the_cache_in_place(tiny_models, monkeypatch):
    """No per-step copy of the whole cache: decoding rows attend over a view of the preallocated tensors."""
    base = tiny_models("llama")
    engine = Engine(base, max_rows=4, step_tokens=32)
    seen = []
    original = engine.cache.update

    def spy(keys, values, layer, *args, **kwargs):
        out = original(keys, values, layer, *args, **kwargs)
        if keys.shape[2] == 1:  # a decoding step
            seen.append(out[0].untyped_storage().data_ptr() == engine.cache.keys[layer].untyped_storage().data_ptr())
        return out

    monkeypatch.setattr(engine.cache, "update", spy)
    run(engine, {0: [sequence(base, s, t, GenerationConfig(6)) for s, t in zip(states(base), TEXTS)]})
    assert seen and all(seen)


def test_log_probs_of_generated_and_input_tokens_match_the_forward(tiny_models):
    base = tiny_models("gemma3")
    state = states(base)[1]
    text = TEXTS[1]
    seq = sequence(base, state, text, GenerationConfig(4), logprobs=3, prompt_logprobs=True)
    other = sequence(base, None, TEXTS[0], GenerationConfig(4))
    deltas = []
    engine = Engine(base, max_rows=2, step_tokens=10)  # the input is scored over several chunks
    engine.add(other)
    engine.add(seq)
    while engine.busy:
        deltas += [d for s, d in engine.step() if s is seq]
    ids = base.encode(text)
    batch = pad_batch([ids], base.pad_token_id)
    want = input_logits(base, state, batch)[0].float().log_softmax(-1)
    prompt = deltas[0].prompt
    assert [p.token for p in prompt] == ids and prompt[0].logprob is None
    for j, entry in enumerate(prompt[1:], start=1):
        assert entry.logprob == pytest.approx(float(want[j - 1, ids[j]]), abs=1e-4)
        assert [t for t, _ in entry.top] == want[j - 1].topk(3).indices.tolist()
    generated = [t for d in deltas for t in d.tokens]
    first = next_token_logits(base, state, batch)[0].float().log_softmax(-1)
    assert generated[0].token == int(first.argmax())
    assert generated[0].logprob == pytest.approx(float(first.max()), abs=1e-4)
    assert len(generated) == 4 and all(len(t.top) == 3 for t in generated)
    assert deltas[-1].finish == "length"


def test_zero_new_tokens_only_scores_the_input(tiny_models):
    base = tiny_models("llama")
    seq = Sequence(None, base.encode("score me"), GenerationConfig(1), 0, eos_token_ids(base), base.tokenizer,
                   logprobs=1, prompt_logprobs=True)  # fmt: skip
    engine = Engine(base)
    engine.add(seq)
    ((got, delta),) = engine.step()
    assert got is seq and delta.finish == "length" and not delta.tokens and delta.text == ""
    assert len(delta.prompt) == len(seq.ids) and not engine.busy
    assert torch.isfinite(torch.tensor([p.logprob for p in delta.prompt[1:]])).all()
