"""SoftPrompt: initialisations, the PEFT-compatible folder format, and refusal of wrong models."""

import dataclasses
import json
import os

import pytest
import torch
from peft import PeftModel, PromptTuningConfig, TaskType, get_peft_model

from softprompt.errors import PromptFileError, SoftPromptError
from softprompt.forward import input_logits, pad_batch, prompt_state
from softprompt.prompts.files import INITIAL_FILE, WEIGHTS_FILE
from softprompt.prompts.initialize import frequent_token_ids
from softprompt.prompts.meta import PromptMeta
from softprompt.prompts.plain import SoftPrompt
from softprompt.testing import tiny_base


def test_random_init_is_uniform_in_half_interval(tiny_models):
    prompt = SoftPrompt.initialize(tiny_models("llama"), 50, "random", seed=1)
    assert prompt.embeddings.shape == (50, 32)
    assert prompt.embeddings.dtype == torch.float32
    assert prompt.embeddings.min() >= -0.5 and prompt.embeddings.max() <= 0.5
    assert prompt.embeddings.std() > 0.2  # uniform [-0.5, 0.5] has std 0.29


def test_init_is_reproducible_by_seed(tiny_models):
    base = tiny_models("llama")
    a = SoftPrompt.initialize(base, 8, "vocab", seed=3).embeddings
    b = SoftPrompt.initialize(base, 8, "vocab", seed=3).embeddings
    c = SoftPrompt.initialize(base, 8, "vocab", seed=4).embeddings
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_vocab_init_rows_are_frequent_token_embeddings(tiny_models):
    base = tiny_models("llama")
    prompt = SoftPrompt.initialize(base, 10, "vocab", seed=0)
    pool = base.input_embeddings.weight[frequent_token_ids(base)]
    for row in prompt.embeddings:
        assert (pool == row).all(dim=1).any()
    special = set(base.tokenizer.all_special_ids)
    assert not special & set(frequent_token_ids(base).tolist())


def test_text_init_repeats_and_cuts_like_peft(tiny_models):
    base = tiny_models("llama")
    ids = base.encode("abc")
    prompt = SoftPrompt.initialize(base, 7, "text:abc")
    expected = base.embed(torch.tensor((ids * 3)[:7]))
    torch.testing.assert_close(prompt.embeddings, expected)
    assert prompt.meta.init == "text:abc"


def test_labels_init_averages_multi_token_labels_then_samples(tiny_models):
    base = tiny_models("llama")
    words = [" yes", " no"]
    prompt = SoftPrompt.initialize(base, 6, "labels", label_words=words, seed=0)
    for row, w in enumerate(words):
        expected = base.embed(torch.tensor(base.encode(w))).mean(dim=0)
        torch.testing.assert_close(prompt.embeddings[row], expected)
    pool = base.input_embeddings.weight[frequent_token_ids(base)]
    for row in prompt.embeddings[2:]:
        assert (pool == row).all(dim=1).any()


def test_labels_init_needs_labels_and_room(tiny_models):
    base = tiny_models("llama")
    with pytest.raises(SoftPromptError, match="verbalizer"):
        SoftPrompt.initialize(base, 4, "labels")
    with pytest.raises(SoftPromptError, match="at least one virtual token per label"):
        SoftPrompt.initialize(base, 1, "labels", label_words=[" a", " b"])


def test_unknown_init_names_the_choices(tiny_models):
    with pytest.raises(SoftPromptError, match="random, vocab, labels"):
        SoftPrompt.initialize(tiny_models("llama"), 4, "zeros")


def test_file_init_starts_from_existing_prompt(tiny_models, tmp_path):
    base = tiny_models("llama")
    source = SoftPrompt.initialize(base, 3, "random", seed=5)
    source.save(tmp_path / "p", base)
    longer = SoftPrompt.initialize(base, 5, f"file:{tmp_path / 'p'}")
    torch.testing.assert_close(longer.embeddings[:3], source.embeddings)
    torch.testing.assert_close(longer.embeddings[3:], source.embeddings[:2])
    shorter = SoftPrompt.initialize(base, 2, f"file:{tmp_path / 'p'}")
    torch.testing.assert_close(shorter.embeddings, source.embeddings[:2])


def test_save_load_round_trip_keeps_tensor_and_metadata(tiny_models, tmp_path):
    base = tiny_models("llama")
    meta = PromptMeta(task="classify", template="Q: {text}\nA:", verbalizer={"pos": " yes", "neg": " no"})
    prompt = SoftPrompt.initialize(base, 4, "vocab", meta=meta)
    with torch.no_grad():
        prompt.embeddings.add_(1.0)  # "trained": differs from the initial value
    prompt.meta = dataclasses.replace(prompt.meta, training={"steps": 10, "dev_accuracy": 0.75})
    prompt.save(tmp_path / "p", base)
    loaded = SoftPrompt.load(tmp_path / "p", base)
    assert torch.equal(loaded.embeddings, prompt.embeddings)
    assert torch.equal(loaded.initial, prompt.initial)
    assert loaded.meta == prompt.meta
    config = json.loads((tmp_path / "p" / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING"
    assert config["num_virtual_tokens"] == 4 and config["token_dim"] == 32
    assert config["num_layers"] == 2 and config["num_attention_heads"] == 4


@pytest.mark.parametrize("kind", ["gpt2", "llama", "gemma3"])
def test_peft_reads_our_folder_and_gives_the_same_logits(tmp_path, kind):
    base = tiny_base(kind)  # a private copy: PEFT wraps the model in place
    prompt = SoftPrompt.initialize(base, 5, "random", seed=2)
    prompt.save(tmp_path / "p", base)
    batch = pad_batch([base.encode("hello there"), base.encode("hi you")], base.pad_token_id, side="right")
    ours = input_logits(base, prompt_state(base, prompt.embeddings), batch)
    peft_model = PeftModel.from_pretrained(base.model, tmp_path / "p")
    theirs = peft_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, 5:]
    real = batch.attention_mask.bool()  # pad slots' outputs are never used
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=1e-5)


def test_we_read_a_folder_saved_by_peft(tmp_path):
    base = tiny_base("llama")
    peft_model = get_peft_model(base.model, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=6))
    peft_model.save_pretrained(tmp_path / "peft")
    expected = peft_model.prompt_encoder.default.embedding.weight.detach()
    loaded = SoftPrompt.load(tmp_path / "peft", base)
    assert torch.equal(loaded.embeddings, expected)
    assert loaded.meta.base_fingerprint is None  # PEFT files carry none: not checked


def test_we_read_peft_seq2seq_folder_taking_the_encoder_half(tmp_path):
    base = tiny_base("t5")
    peft_model = get_peft_model(base.model, PromptTuningConfig(task_type=TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=3))
    peft_model.save_pretrained(tmp_path / "peft")
    full = peft_model.prompt_encoder.default.embedding.weight.detach()
    assert full.shape[0] == 6  # PEFT stores encoder and decoder halves
    loaded = SoftPrompt.load(tmp_path / "peft", base)
    assert torch.equal(loaded.embeddings, full[:3])


def test_prompt_for_another_model_is_refused(tmp_path):
    base = tiny_base("llama", seed=0)
    other = tiny_base("llama", seed=1)  # same shape, different weights
    SoftPrompt.initialize(base, 4, "random").save(tmp_path / "p", base)
    with pytest.raises(PromptFileError, match="fingerprint.*--allow-model-mismatch"):
        SoftPrompt.load(tmp_path / "p", other)
    assert SoftPrompt.load(tmp_path / "p", other, allow_mismatch=True).num_virtual_tokens == 4


def test_prompt_with_wrong_dimension_is_refused_even_with_override(tmp_path, tiny_models):
    llama = tiny_models("llama")
    SoftPrompt(torch.zeros(3, 16)).save(tmp_path / "p")
    with pytest.raises(PromptFileError, match="dimension 16.*hidden size 32"):
        SoftPrompt.load(tmp_path / "p", llama, allow_mismatch=True)


def test_truncated_weights_file_gives_clear_error(tmp_path, tiny_models):
    base = tiny_models("llama")
    SoftPrompt.initialize(base, 4, "random").save(tmp_path / "p", base)
    weights = tmp_path / "p" / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-40])
    with pytest.raises(PromptFileError, match="corrupt or truncated"):
        SoftPrompt.load(tmp_path / "p", base)


def test_corrupt_config_and_missing_files_give_clear_errors(tmp_path, tiny_models):
    base = tiny_models("llama")
    with pytest.raises(PromptFileError, match="does not exist"):
        SoftPrompt.load(tmp_path / "nowhere")
    SoftPrompt.initialize(base, 4, "random").save(tmp_path / "p", base)
    (tmp_path / "p" / WEIGHTS_FILE).unlink()
    with pytest.raises(PromptFileError, match="missing"):
        SoftPrompt.load(tmp_path / "p")
    (tmp_path / "p" / "adapter_config.json").write_text("{not json")
    with pytest.raises(PromptFileError, match="not valid JSON"):
        SoftPrompt.load(tmp_path / "p")
    (tmp_path / "p" / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    with pytest.raises(PromptFileError, match="only prompt-tuning"):
        SoftPrompt.load(tmp_path / "p")


def test_nan_prompt_file_is_refused(tmp_path):
    SoftPrompt(torch.full((2, 4), float("nan"))).save(tmp_path / "p")
    with pytest.raises(PromptFileError, match="NaN"):
        SoftPrompt.load(tmp_path / "p")


def test_failed_save_leaves_previous_folder_intact(tmp_path, tiny_models, monkeypatch):
    base = tiny_models("llama")
    first = SoftPrompt.initialize(base, 4, "random", seed=0)
    first.save(tmp_path / "p", base)
    second = SoftPrompt.initialize(base, 4, "random", seed=1)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("softprompt.prompts.files.save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        second.save(tmp_path / "p", base)
    assert torch.equal(SoftPrompt.load(tmp_path / "p", base).embeddings, first.embeddings)
    assert sorted(os.listdir(tmp_path)) == ["p"]  # no temp debris
    assert (tmp_path / "p" / INITIAL_FILE).is_file()


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ("[1, 2]", "should be a JSON object, got list"),
        ('{"template": 5}', "field 'template' has the wrong type"),
        ('{"verbalizer": {"a": 1}}', "field 'verbalizer' has the wrong type"),
        ('{"training": "fast"}', "field 'training' has the wrong type"),
        ('{"task": ["classify"]}', "field 'task' has the wrong type"),
    ],
)
def test_metadata_of_the_wrong_shape_is_a_prompt_file_error(metadata, message):
    with pytest.raises(PromptFileError, match=message):
        PromptMeta.from_json(metadata, where="p/adapter_model.safetensors")


@pytest.mark.parametrize("value", ["x", 0, -3, 2.5, True])
def test_a_bad_num_virtual_tokens_is_a_prompt_file_error(tmp_path, tiny_models, value):
    base = tiny_models("llama")
    SoftPrompt.initialize(base, 4, "random").save(tmp_path / "p", base)
    config = json.loads((tmp_path / "p" / "adapter_config.json").read_text())
    (tmp_path / "p" / "adapter_config.json").write_text(json.dumps({**config, "num_virtual_tokens": value}))
    with pytest.raises(PromptFileError, match="num_virtual_tokens should be a whole number"):
        SoftPrompt.load(tmp_path / "p", base)


def test_an_unreadable_config_is_a_prompt_file_error(tmp_path, tiny_models):
    base = tiny_models("llama")
    SoftPrompt.initialize(base, 4, "random").save(tmp_path / "p", base)
    (tmp_path / "p" / "adapter_config.json").unlink()
    (tmp_path / "p" / "adapter_config.json").mkdir()
    with pytest.raises(PromptFileError, match="cannot be read"):
        SoftPrompt.load(tmp_path / "p", base)


# -- Hugging Face conventions ---------------------------------------------------------------


def test_weights_that_are_a_folder_or_integers_are_prompt_file_errors(tmp_path, tiny_models):
    from safetensors.torch import save_file

    base = tiny_models("llama")
    folder = SoftPrompt.initialize(base, 3, "random").save(tmp_path / "p", base)
    (folder / WEIGHTS_FILE).unlink()
    (folder / WEIGHTS_FILE).mkdir()
    with pytest.raises(PromptFileError, match="a folder, not a safetensors file"):
        SoftPrompt.load(folder)
    (folder / WEIGHTS_FILE).rmdir()
    save_file({"prompt_embeddings": torch.zeros(3, 32, dtype=torch.int64)}, str(folder / WEIGHTS_FILE))
    with pytest.raises(PromptFileError, match="holds int64 values, but a prompt is floating point"):
        SoftPrompt.load(folder)


def test_peft_fields_of_the_wrong_type_are_ignored(tmp_path, tiny_models):
    base = tiny_models("llama")
    folder = SoftPrompt.initialize(base, 3, "random").save(tmp_path / "p", base)
    from safetensors.torch import save_file

    save_file({"prompt_embeddings": torch.zeros(3, 32)}, str(folder / WEIGHTS_FILE))  # a PEFT file: no metadata
    config = json.loads((folder / "adapter_config.json").read_text())
    config.update(base_model_name_or_path=7, prompt_tuning_init=["TEXT"])
    (folder / "adapter_config.json").write_text(json.dumps(config))
    meta = SoftPrompt.load(folder).meta
    assert meta.base_model is None and meta.init is None


def test_a_builtin_alias_is_written_as_its_hub_id_and_kept_in_our_metadata(tmp_path):
    meta = PromptMeta(task="classify", template="R: {text}\nS:", verbalizer={"a": " x"}, base_model="smollm2-135m")
    SoftPrompt(torch.zeros(2, 32), meta).save_pretrained(tmp_path / "p")
    config = json.loads((tmp_path / "p" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert SoftPrompt.from_pretrained(tmp_path / "p").meta.base_model == "smollm2-135m"


def test_the_hub_id_of_a_builtin_loads_the_builtin(monkeypatch, tmp_path):
    """So a folder's own base_model_name_or_path works offline and gives the model it was trained on."""
    from softprompt import models
    from softprompt.model_names import BUILTIN_MODELS, builtin_alias, resolvable_name

    monkeypatch.setattr(models, "builtin_gguf_path", lambda alias: f"gguf of {BUILTIN_MODELS[alias].filename}")
    monkeypatch.setattr(models, "_convert_gguf_cached", lambda path: f"converted {path}")
    want = f"converted gguf of {BUILTIN_MODELS['smollm2-135m'].filename}"
    assert models._resolve_to_folder("HuggingFaceTB/SmolLM2-135M-Instruct") == want
    assert models._resolve_to_folder("smollm2-135m") == want
    assert builtin_alias("HuggingFaceTB/SmolLM2-135M-Instruct") == "smollm2-135m"
    assert resolvable_name("smollm2-135m") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert resolvable_name("/models/mine") == "/models/mine" and resolvable_name(None) is None
    assert models._resolve_to_folder("someone/other-model") == "someone/other-model"


def test_auto_peft_model_loads_our_folder_by_the_hub_id_it_records(tmp_path):
    """PEFT's AutoPeftModelForCausalLM, offline, with the hub id resolved from a local Hugging Face cache."""
    import subprocess
    import sys
    import textwrap

    from softprompt.testing import save_tiny

    hub_id = "HuggingFaceTB/SmolLM2-135M-Instruct"
    snapshot = tmp_path / "hub" / f"models--{hub_id.replace('/', '--')}" / "snapshots" / ("0" * 40)
    save_tiny("llama", snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    meta = PromptMeta(task="classify", template="R: {text}\nS:", verbalizer={"a": " x"}, base_model="smollm2-135m")
    prompt = SoftPrompt(torch.rand(4, 32), meta)
    prompt.save_pretrained(tmp_path / "prompt")
    code = f"""
        import torch
        from peft import AutoPeftModelForCausalLM
        model = AutoPeftModelForCausalLM.from_pretrained({str(tmp_path / "prompt")!r})
        table = model.prompt_encoder["default"].embedding.weight
        print(model.peft_config["default"].base_model_name_or_path, tuple(table.shape))
        torch.save(table.detach(), {str(tmp_path / "table.pt")!r})
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [hub_id, "(4,", "32)"]
    torch.testing.assert_close(torch.load(tmp_path / "table.pt"), prompt.embeddings.detach())


def test_from_pretrained_fetches_a_hub_repository(monkeypatch, tmp_path, tiny_models):
    import huggingface_hub

    base = tiny_models("llama")
    SoftPrompt.initialize(base, 3, "random").save_pretrained(tmp_path / "cache" / "someone" / "sentiment", base)
    asked = []

    def snapshot_download(repo_id, **kwargs):
        asked.append((repo_id, kwargs))
        return str(tmp_path / "cache" / repo_id)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    prompt = SoftPrompt.from_pretrained("someone/sentiment", base, revision="v1")
    assert prompt.num_virtual_tokens == 3
    assert asked == [
        (
            "someone/sentiment",
            {"revision": "v1", "allow_patterns": ["adapter_config.json", WEIGHTS_FILE, INITIAL_FILE]},
        )
    ]


def test_from_pretrained_offline_names_the_repository_and_what_to_do(monkeypatch, tmp_path):
    import huggingface_hub

    def offline(repo_id, **kwargs):
        raise huggingface_hub.errors.OfflineModeIsEnabled("Cannot reach the Hub: offline mode is enabled.")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(
        PromptFileError, match=r"'someone/sentiment' is no prompt folder here, and fetching it .*Offline"
    ):
        SoftPrompt.from_pretrained("someone/sentiment")
    with pytest.raises(PromptFileError, match="does not exist"):  # a path, not a repository id: no download
        SoftPrompt.from_pretrained(tmp_path / "missing")


def test_a_prompt_file_that_may_not_be_read_says_so(tmp_path, tiny_models, monkeypatch):
    """safetensors calls an unreadable file "No such file"; the message must say what it is (as root, simulated)."""
    import errno

    from softprompt.prompts import files as prompt_module

    base = tiny_models("llama")
    folder = SoftPrompt.initialize(base, 3, "random").save(tmp_path / "p", base)
    real_open = open

    def refuse(path, *args, **kwargs):
        if str(path).endswith(WEIGHTS_FILE):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(prompt_module, "open", refuse, raising=False)
    with pytest.raises(
        PromptFileError, match=r"cannot read the prompt: .*adapter_model.safetensors: Permission denied; check"
    ):
        SoftPrompt.load(folder)
