"""Training, classification and the vocabulary views run on a quantised base with no change of their own."""

import pytest
import torch
from tests.test_train import TASK, config, run, setup

from softprompt.infer import ClassifyResult, Predictor
from softprompt.models import quantize_base
from softprompt.prompts.vocab import vocabulary_embeddings
from softprompt.testing import tiny_base


@pytest.mark.parametrize(("mode", "method"), [("int8", "prompt"), ("int4", "prefix")])
def test_a_prompt_trains_and_classifies_on_a_quantised_base(tmp_path, mode, method):
    base = quantize_base(tiny_base("llama"), mode)
    rows, dev = setup(base, n=24)
    result = run(base, tmp_path, config(steps=3, method=method), rows, dev)
    assert result.steps == 3
    assert not torch.equal(result.prompt.weights, result.prompt.initial)  # it learned through the int weights
    assert result.prompt.meta.base_fingerprint == tiny_base("llama").fingerprint
    predictor = Predictor(base)
    predictor.add_prompt("p", result.prompt)
    (answer,) = predictor.classify([("p", "good good x")])
    assert isinstance(answer, ClassifyResult) and set(answer.probs) == set(TASK.labels)


def test_vocabulary_embeddings_are_the_dequantised_rows():
    base = quantize_base(tiny_base("gemma3"), "int8")
    table = vocabulary_embeddings(base)
    assert table.shape == (base.vocab_size, base.hidden_size)
    ids = torch.arange(base.vocab_size)
    torch.testing.assert_close(table, base.embed(ids), atol=0, rtol=0)
