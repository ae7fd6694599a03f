"""Decoding and continuous batching run unchanged from the quantised modules, exactly."""

import pytest
from tests.engine.test_engine import TEXTS, alone, run, sequence, states

from softprompt.decode import GenerationConfig
from softprompt.engine import Engine


@pytest.mark.parametrize(("kind", "mode"), [("llama", "int8"), ("gemma3", "int4"), ("gpt2", "int4")])
def test_mixed_continuous_batch_equals_each_row_alone(quantized_pair, kind, mode):
    base, _ = quantized_pair(kind, mode)
    configs = [GenerationConfig(12), GenerationConfig(5, stop=("e",)), GenerationConfig(9), GenerationConfig(3)]
    seqs = [sequence(base, s, t, c) for s, t, c in zip(states(base), TEXTS, configs)]
    engine = Engine(base, max_rows=4, step_tokens=8)
    texts = run(engine, {0: [seqs[0]], 2: [seqs[1]], 3: [seqs[2]], 7: [seqs[3]]})
    for seq, state, text, config in zip(seqs, states(base), TEXTS, configs):
        assert texts[seq] == alone(base, state, text, config)


def test_greedy_text_of_the_quantised_model_equals_its_dequantised_reference(quantized_pair):
    base, reference = quantized_pair("qwen2", "int8")
    config = GenerationConfig(10)
    for state, ref_state, text in zip(states(base), states(reference), TEXTS):
        assert alone(base, state, text, config) == alone(reference, ref_state, text, config)
