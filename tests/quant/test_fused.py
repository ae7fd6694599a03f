"""Sibling projections on one input (q/k/v, gate/up) share one int8 table and one decoding product."""

import copy

import pytest
import torch

from softprompt.forward import next_token_logits, pad_batch
from softprompt.models import quantize_base
from softprompt.quant import Quantization, fuse_shared_inputs, load_quantized, save_quantized
from softprompt.quant.fused import SharedProduct
from softprompt.testing import tiny_base

TEXTS = ["the cat sat on the mat", "a b", "hello there, how are you doing today?"]


def unfused(base):
    """A deep copy of `base` whose projections run one product each (the sharing undone)."""
    plain = copy.deepcopy(base)
    for module in plain.model.modules():
        if getattr(module, "shared", None) is not None:
            module.qweight, module.scales = module.qweight.clone(), module.scales.clone()
            module.shared = None
    return plain


@pytest.mark.parametrize("kind", ["llama", "qwen2", "gemma3"])
def test_decoding_logits_equal_the_unfused_models_exactly(kind):
    base = quantize_base(tiny_base(kind), Quantization("int8"))
    shared = {id(m.shared[0]) for m in base.model.modules() if getattr(m, "shared", None) is not None}
    assert len(shared) == 2 * base.model.config.num_hidden_layers  # q/k/v and gate/up in every layer
    batch = pad_batch([base.encode(t) for t in TEXTS], base.pad_token_id)
    calls = []
    columns = SharedProduct.columns
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SharedProduct, "columns", lambda self, i, x: calls.append(i) or columns(self, i, x))
        with torch.no_grad():
            fused = next_token_logits(base, None, batch)
    assert calls
    with torch.no_grad():
        plain = next_token_logits(unfused(base), None, batch)
    assert torch.equal(fused, plain)


def test_tables_are_shared_not_copied_and_the_state_is_unchanged(tmp_path):
    base = quantize_base(tiny_base("llama"), Quantization("int8"))
    attention = base.model.model.layers[0].self_attn
    q, k = attention.q_proj.matrix, attention.k_proj.matrix
    assert q.qweight.untyped_storage().data_ptr() == k.qweight.untyped_storage().data_ptr()
    plain = unfused(base)
    assert base.model.state_dict().keys() == plain.model.state_dict().keys()
    save_quantized(base.model, tmp_path)  # views of a shared table are saved as tables of their own
    again = load_quantized(tmp_path, base.model.config, Quantization("int8"))
    for (name, a), b in zip(base.model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_member_given_another_input_computes_its_own_product():
    base = quantize_base(tiny_base("llama"), Quantization("int8"))
    attention = base.model.model.layers[0].self_attn
    x, y = torch.randn(2, 3, attention.q_proj.in_features), torch.randn(2, 3, attention.q_proj.in_features)
    with torch.no_grad():
        q_x, k_y, v_x = attention.q_proj(x), attention.k_proj(y), attention.v_proj(x)
        x.add_(1.0)  # the same tensor changed in place: its kept product is stale
        k_x = attention.k_proj(x)
    reference = unfused(base).model.model.layers[0].self_attn
    with torch.no_grad():
        assert torch.equal(k_y, reference.k_proj(y))
        assert torch.equal(v_x, reference.v_proj(x - 1.0))
        assert torch.equal(q_x, reference.q_proj(x - 1.0))
        assert torch.equal(k_x, reference.k_proj(x))


def test_training_runs_each_members_exact_product():
    base = quantize_base(tiny_base("qwen2"), Quantization("int8"))
    calls = []
    columns = SharedProduct.columns
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SharedProduct, "columns", lambda self, i, x: calls.append(i) or columns(self, i, x))
        x = torch.randn(1, 4, base.hidden_size, requires_grad=True)
        base.model.model.layers[0].mlp(x).sum().backward()
    assert not calls and x.grad is not None


def test_int4_models_and_encoder_decoders_are_left_alone():
    assert fuse_shared_inputs(quantize_base(tiny_base("t5"), Quantization("int8")).model) == 0
    int4 = quantize_base(tiny_base("llama"), Quantization("int4"))
    assert not any(getattr(m, "shared", None) for m in int4.model.modules())
