"""The decoding loop: config validation, token picking, text pieces, and greedy == full recompute."""

import pytest
import torch

from softprompt.decode import (
    GenerationConfig,
    RowText,
    eos_token_ids,
    filter_logits,
    generate_rows,
    next_tokens,
    row_generators,
    stream_generate,
)
from softprompt.errors import SoftPromptError
from softprompt.forward import next_token_logits, pad_batch, prompt_state, stack_states
from softprompt.testing import tiny_tokenizer

KINDS = ("gpt2", "llama", "gemma3", "t5")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_new_tokens": 0},
        {"temperature": -1.0},
        {"temperature": float("nan")},
        {"top_k": -1},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"stop": ("",)},
    ],
)
def test_config_refuses_bad_values(kwargs):
    with pytest.raises(SoftPromptError):
        GenerationConfig(**kwargs)


def test_config_stop_string_becomes_tuple():
    assert GenerationConfig(stop="\n").stop == ("\n",)
    assert GenerationConfig(stop=["a", "b"]).stop == ("a", "b")
    assert GenerationConfig().greedy and not GenerationConfig(temperature=0.7).greedy


def test_config_from_options_reads_the_fields_of_cli_arguments_or_a_request_body():
    from argparse import Namespace

    args = Namespace(max_new_tokens=5, temperature=0.5, top_k=3, top_p=0.9, seed=1, stop=["\n"], model="m")
    assert GenerationConfig.from_options(args) == GenerationConfig(5, 0.5, 3, 0.9, 1, ("\n",))
    body = Namespace(max_tokens=7, temperature=0.0, top_k=0, top_p=1.0, seed=None, stop=None, n=1)
    assert GenerationConfig.from_options(body, max_new_tokens=body.max_tokens) == GenerationConfig(7)


def test_filter_logits_top_k_and_top_p():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    keep = lambda out: (out > float("-inf")).squeeze(0).tolist()  # noqa: E731
    assert keep(filter_logits(logits, 2, 1.0)) == [True, True, False, False]
    # Nucleus: the smallest set reaching p; the first token always stays.
    assert keep(filter_logits(logits, 0, 0.7)) == [True, True, False, False]
    assert keep(filter_logits(logits, 0, 0.9)) == [True, True, True, False]
    assert keep(filter_logits(logits, 0, 0.1)) == [True, False, False, False]
    # Unsorted input: the filter follows values, not positions.
    shuffled = logits[:, [2, 0, 3, 1]]
    assert keep(filter_logits(shuffled, 0, 0.7)) == [False, True, False, True]


def test_sampling_is_seeded_per_row_and_top_k_1_is_greedy():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    config = GenerationConfig(temperature=1.0)
    a = next_tokens(logits, config, row_generators([7, 8, 9]))
    b = next_tokens(logits, config, row_generators([7, 8, 9]))
    assert torch.equal(a, b)
    # Row 1 alone with its seed gives the same token as inside the batch.
    assert next_tokens(logits[1:2], config, row_generators([8])).item() == a[1].item()
    greedy_like = next_tokens(logits, GenerationConfig(temperature=1.0, top_k=1), row_generators([1, 2, 3]))
    assert torch.equal(greedy_like, logits.argmax(-1))


def push_text(tokenizer, row, text):
    return [row.push(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]


def test_row_text_cuts_at_stop_and_never_takes_back_a_piece():
    tok = tiny_tokenizer()
    row = RowText(tok, ("END", "\n\n"), limit=100, eos_ids=frozenset({tok.eos_token_id}))
    pieces = push_text(tok, row, "hello EN world ENDmore")
    assert row.done and row.text == "hello EN world "
    assert "".join(pieces) == row.text
    # "EN" was held back until it turned out not to start "END".
    assert pieces[:8] == ["h", "e", "l", "l", "o", " ", "", ""]


def test_row_text_holds_back_half_characters_and_stops_at_eos_and_limit():
    tok = tiny_tokenizer()
    eos = frozenset({tok.eos_token_id})
    row = RowText(tok, (), limit=100, eos_ids=eos)
    pieces = push_text(tok, row, "é!")  # é is two byte tokens
    assert pieces == ["", "é", "!"]
    assert row.push(tok.eos_token_id) == "" and row.done and row.push(5) == ""
    short = RowText(tok, (), limit=3, eos_ids=eos)
    assert "".join(push_text(tok, short, "abcdef")) == "abc" and short.done
    assert RowText(tok, (), limit=0, eos_ids=eos).done


def test_eos_ids_include_generation_config(tiny_models):
    base = tiny_models("llama")
    assert base.tokenizer.eos_token_id in eos_token_ids(base)


def reference_greedy(base, prompt, ids, steps):
    """Greedy decoding the slow way: rerun the whole unpadded row, the prompt inline, each step."""
    state = None if prompt is None else prompt_state(base, prompt, share_prefix=False)
    out = []
    with torch.no_grad():
        for _ in range(steps):
            logits = next_token_logits(base, state, pad_batch([ids], base.pad_token_id), [out])[-1]
            token = int(logits.argmax())
            if token in eos_token_ids(base):
                break
            out.append(token)
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_cached_greedy_equals_full_recompute_with_mixed_prefixes(tiny_models, kind):
    base = tiny_models(kind)
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randn(3, base.hidden_size, generator=g), None, torch.randn(9, base.hidden_size, generator=g)]
    inputs = [base.encode(t) for t in ("a cat sat", "on the long mat today", "x")]
    with torch.no_grad():
        state = stack_states([None if p is None else prompt_state(base, p) for p in prompts])
    batch = pad_batch(inputs, base.pad_token_id, side="left")
    rows = generate_rows(base, state, batch, GenerationConfig(max_new_tokens=10), limits=[10, 4, 10])
    for row, prompt, ids, limit in zip(rows, prompts, inputs, [10, 4, 10]):
        assert row.ids == reference_greedy(base, prompt, ids, limit)
    assert any(len(row.ids) > 2 for row in rows)


def test_stream_pieces_join_to_the_final_texts(tiny_models):
    base = tiny_models("llama")
    batch = pad_batch([base.encode("hello"), base.encode("hi there")], base.pad_token_id)
    config = GenerationConfig(max_new_tokens=6, temperature=0.9, seed=3)
    steps = list(stream_generate(base, None, batch, config))
    joined = ["".join(step[i] for step in steps) for i in range(2)]
    rows = generate_rows(base, None, batch, config)
    assert joined == [row.text for row in rows]
    assert len(steps) <= 6 and all(len(step) == 2 for step in steps)


def test_tiny_positive_temperature_decodes_greedily_instead_of_overflowing():
    from softprompt.decode import GenerationConfig, next_tokens

    logits = torch.tensor([[1.0, 3.0, 2.0], [5.0, -1.0, 0.0]])
    for temperature in (1e-300, 5e-324, 1e-6):
        config = GenerationConfig(temperature=temperature, seed=0)
        assert config.greedy
        assert next_tokens(logits, config).tolist() == [1, 0]
    assert not GenerationConfig(temperature=0.5).greedy


def test_a_vanishing_top_p_still_keeps_the_most_likely_token():
    from softprompt.decode import filter_logits

    logits = torch.tensor([[0.1, 0.3, 0.2]])
    kept = filter_logits(logits, top_k=0, top_p=1.8e-199)  # 0.0 in float32
    assert torch.isfinite(kept).tolist() == [[False, True, False]]
