"""compare on a quantised base: LoRA as QLoRA (fp32 adapters over the frozen quantised linears, PEFT's targets,
init and files), full fine-tuning refused with one sentence, the hard prompts and prompt methods as usual."""

from __future__ import annotations

import pytest
import torch

from softprompt.cli import main
from softprompt.compare.config import CompareConfig, full_finetune_refusal
from softprompt.compare.finetune import full_finetune_copy, lora_copy, save_lora
from softprompt.compare.forgetting import weights_digest
from softprompt.compare.qlora import LoraLinear, qlora_copy
from softprompt.compare.run import run_compare
from softprompt.errors import EXIT_USAGE, FieldError, SoftPromptError
from softprompt.models import load_base_model, quantize_base
from softprompt.tasks import ClassifyTask, Encoded
from softprompt.testing import save_tiny, tiny_base
from test_compare import tiny_config, write_data

SENTENCE = full_finetune_refusal("int8")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qcompare")
    save_tiny("llama", folder / "model")
    write_data(folder / "data.jsonl")
    return folder, load_base_model(str(folder / "model"), quantize="int8")


def test_full_finetuning_is_refused_on_a_quantised_base_with_one_sentence(capsys):
    config = CompareConfig(quantize="int8")
    assert config.refused == {"full-finetune": SENTENCE}
    assert "full-finetune" in config.methods and "full-finetune" not in config.runnable_methods
    assert CompareConfig().refused == {} and "full-finetune" in CompareConfig().runnable_methods
    with pytest.raises(FieldError, match="Full fine-tuning is not run on a quantised base model"):
        CompareConfig(quantize="int8", methods="full-finetune")
    assert main(["compare", "--methods", "full-finetune", "--quantize", "int8"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert SENTENCE in err and err.count("\n") == 1
    with pytest.raises(SoftPromptError, match="Full fine-tuning is not run"):
        full_finetune_copy(quantize_base(tiny_base("llama"), "int8"))


def test_results_measured_before_quantize_existed_still_resume():
    assert "quantize" not in CompareConfig().fingerprint()  # what older reports saved
    assert CompareConfig(quantize="int4").fingerprint()["quantize"] == "int4"
    assert CompareConfig(quantize="INT4/64").fingerprint()["quantize"] == "int4/64"
    with pytest.raises(FieldError, match="quantize"):
        CompareConfig(quantize="int5")
    assert CompareConfig(quantize="int4").differences(CompareConfig().fingerprint()) == [
        "quantize: saved None, now 'int4'"
    ]


@pytest.mark.parametrize("kind, mode", [("llama", "int8"), ("gpt2", "int4"), ("qwen2", "int8"), ("gemma3", "int4")])
def test_lora_on_a_quantised_base_trains_only_the_adapters(kind, mode):
    base = quantize_base(tiny_base(kind), mode)
    digest = weights_digest(base.model)
    model, adapter = lora_copy(base, r=4, alpha=8, seed=0)
    assert adapter.layers and all(isinstance(layer, LoraLinear) for layer in adapter.layers.values())
    task = ClassifyTask("Text: {text}\nLabel:", {"a": " yes", "b": " no"})
    rows = [Encoded((5, 6, 7), 0), Encoded((8, 9), 1)]
    before = task.loss(base, None, *task.collate(base, rows))
    loss = task.loss(model, None, *task.collate(model, rows))
    assert torch.allclose(loss, before)  # B starts at zero: the adapted model starts as the base model
    loss.backward()
    with_grad = {n for n, p in model.model.named_parameters() if p.grad is not None}
    lora = {n for n, p in model.model.named_parameters() if ".lora_" in n}
    assert with_grad and with_grad <= lora  # nothing outside the adapters gets a gradient
    assert all(p.requires_grad == (n in lora) for n, p in model.model.named_parameters())
    assert all(p.dtype == torch.float32 for n, p in model.model.named_parameters() if n in lora)
    assert weights_digest(base.model) == digest  # the base model is untouched, and its weights are shared
    shared = {t.data_ptr() for t in base.model.buffers()}
    assert shared and shared <= {t.data_ptr() for t in model.model.buffers()}


def test_qlora_uses_peft_targets_init_and_files(tmp_path):
    from peft import PeftModel

    fp32 = tiny_base("llama")
    ours, adapter = qlora_copy(fp32, r=4, alpha=8, seed=3)  # the wrapper runs over any linear layer
    _, peft_model = lora_copy(fp32, r=4, alpha=8, seed=3)
    theirs = {n: p for n, p in peft_model.named_parameters() if ".lora_" in n}
    assert len(theirs) == 2 * len(adapter.layers)
    for name, layer in adapter.layers.items():
        assert torch.equal(layer.lora_A.weight, theirs[f"base_model.model.{name}.lora_A.default.weight"])
    with torch.no_grad():
        for layer in adapter.layers.values():
            layer.lora_B.weight.normal_()  # trained, say
    assert save_lora(adapter, tmp_path / "adapter") > 0
    loaded = PeftModel.from_pretrained(tiny_base("llama").model, str(tmp_path / "adapter"))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, ours.model(input_ids=ids).logits, atol=1e-5)


def test_compare_on_a_quantised_base_runs_lora_and_the_baselines_and_reports_the_refusal(setup):
    folder, base = setup
    config = tiny_config(folder, quantize="int8", methods=("zero-shot", "prompt-tuning", "lora", "full-finetune"))
    messages: list[str] = []
    report = run_compare(config, folder / "out", base=base, show_progress=False, log=messages.append)
    ran = [m["method"] for m in report["methods"]]
    assert ran == ["zero-shot", "prompt-tuning", "lora"]
    assert report["refused"] == {"full-finetune": SENTENCE} and SENTENCE in messages
    assert report["config"]["quantize"] == "int8"
    lora = next(m for m in report["methods"] if m["method"] == "lora")
    assert lora["steps"] == 2 and lora["forgetting"]["measured_after"]
    # A quantised matrix counts as its out x in weights, as the same model in fp32 counts them.
    fp32_total = sum(p.numel() for p in load_base_model(config.model).model.parameters())
    assert report["model"]["parameters"] == report["methods"][0]["total_parameters"] == fp32_total
    assert lora["total_parameters"] == fp32_total + lora["trainable_parameters"] > fp32_total
    assert (folder / "out" / "lora" / "adapter_model.safetensors").is_file()
    text = (folder / "out" / "report.md").read_text()
    assert f"Not run: {SENTENCE}" in text and "QLoRA" in text
