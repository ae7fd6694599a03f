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


def test_inference_runs_the_packed_kernels_close_to_the_reference(quantized_pair, monkeypatch):
    """Under no_grad (decoding, the engine) the bf16 packed kernels run: close to, not equal to, the reference."""
    import torch

    from softprompt.forward import next_token_logits, pad_batch
    from softprompt.quant.int8 import Int8Matrix

    base, reference = quantized_pair("qwen2", "int8")
    calls = []
    kernel = Int8Matrix.kernel_matmul
    monkeypatch.setattr(Int8Matrix, "kernel_matmul", lambda self, x: calls.append(1) or kernel(self, x))
    batch = pad_batch([base.encode(t) for t in TEXTS], base.pad_token_id)
    with torch.no_grad():
        fast = next_token_logits(base, None, batch)
        exact = next_token_logits(reference, None, batch)
    assert calls
    assert ((fast - exact).norm() / exact.norm()).item() < 2e-2
