"""The nearest-token projection of a soft prompt, scored as a hard prompt beside it (tiny models)."""

import json

import pytest
import torch

from softprompt.cli import main
from softprompt.data import Example
from softprompt.evaluate import encode_eval_set, evaluate
from softprompt.projection import nearest_token_ids, score_projection
from softprompt.prompts.meta import PromptMeta
from softprompt.prompts.plain import SoftPrompt
from softprompt.prompts.vocab import vocabulary_embeddings
from softprompt.tasks import ClassifyTask
from softprompt.testing import save_tiny

TASK = ClassifyTask("Text: {text}\nLabel:", {"good": " yes", "bad": " no"})
EXAMPLES = [
    Example("a fine day", "good", "x:1"),
    Example("awful", "bad", "x:2"),
    Example("so so", "good", "x:3"),
    Example("bad bad", "bad", "x:4"),
    Example("lovely", "good", "x:5"),
]


def test_projection_is_built_from_exactly_the_nearest_tokens_and_scored(tiny_models):
    base = tiny_models("llama")
    torch.manual_seed(0)
    soft = torch.randn(6, base.hidden_size) * 0.5
    vocab = vocabulary_embeddings(base)
    expected = [
        max(range(vocab.shape[0]), key=lambda j: float(torch.cosine_similarity(row, vocab[j], dim=0))) for row in soft
    ]
    assert nearest_token_ids(soft, vocab) == expected

    rows = encode_eval_set(base, TASK, EXAMPLES).rows
    score = score_projection(base, TASK, soft, rows, split="dev")
    assert score.token_ids == expected
    assert score.text == base.tokenizer.decode(expected)
    with torch.no_grad():
        hard = base.embed(torch.tensor(expected))
    assert score.hard == evaluate(base, TASK, hard, rows)  # the hard prompt is those tokens' own embeddings
    assert score.soft == evaluate(base, TASK, soft, rows)
    assert score.metric == "accuracy" and score.n == 5


def test_a_prompt_of_vocabulary_tokens_projects_onto_itself(tiny_models):
    base = tiny_models("gpt2")
    ids = [7, 30, 99, 12]
    with torch.no_grad():
        soft = base.embed(torch.tensor(ids))
    rows = encode_eval_set(base, TASK, EXAMPLES).rows
    score = score_projection(base, TASK, soft, rows)
    assert score.token_ids == ids
    assert score.hard == score.soft


def test_inspect_cli_reports_the_projection_score(tmp_path, capsys):
    model = save_tiny("gpt2", tmp_path / "model")
    from softprompt.models import load_base_model

    base = load_base_model(str(model))
    meta = PromptMeta(task="classify", template=TASK.template, verbalizer=TASK.verbalizer)
    prompt = SoftPrompt.initialize(base, 5, "random", meta=meta, seed=3)
    prompt.save(tmp_path / "prompt", base)
    data = tmp_path / "dev.jsonl"
    data.write_text("".join(json.dumps({"text": e.input, "label": e.output}) + "\n" for e in EXAMPLES))

    args = ["inspect", str(tmp_path / "prompt"), "--model", str(model), "--data", str(data)]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    projection = report["projection"]
    assert projection["token_ids"] == [tok["neighbours"][0]["token_id"] for tok in report["tokens"]]
    assert projection["n"] == 5 and projection["metric"] == "accuracy"
    assert set(projection["soft"]) >= {"accuracy", "macro_f1"} and set(projection["hard"]) >= {"accuracy", "macro_f1"}
    loaded = SoftPrompt.load(tmp_path / "prompt", base)
    rows = encode_eval_set(base, TASK, EXAMPLES).rows
    assert projection["soft"]["accuracy"] == pytest.approx(evaluate(base, TASK, loaded.embeddings, rows)["accuracy"])

    assert main([*args, "--limit", "3"]) == 0
    text = capsys.readouterr().out
    assert "nearest-token projection" in text and "as a hard prompt" in text and "on 3 examples" in text

    assert main(["inspect", str(tmp_path / "prompt"), "--model", str(model)]) == 0
    assert "nearest-token projection" not in capsys.readouterr().out  # no data: nothing to score
