"""lm-evaluation-harness's `local-completions` model against `serve`: a multiple-choice task over a local file.

lm-eval scores each choice by a loglikelihood request (`echo`, `logprobs`,
`max_tokens` 1, the prompt as token ids) and reads the continuation's
log-probs back; here the sums it gets must equal the forward's own, with the
soft prompt in front, so an evaluation through the server gives true numbers.
"""

from __future__ import annotations

import json

import pytest

from softprompt.forward import input_logits, pad_batch
from softprompt.testing import save_tiny

from .conftest import fill_prompts, serving

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is a dev dependency (requirements-dev.txt)")

DOCS = [
    {"question": "The sky is", "choices": ["blue", "green", "loud"], "answer": 0},
    {"question": "Two and two make", "choices": ["four", "five"], "answer": 0},
    {"question": "A cat says", "choices": ["woof", "meow", "moo"], "answer": 1},
]
TASK = """\
task: softprompt_tiny
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
"""


def test_local_completions_gets_the_models_own_loglikelihoods(base, tmp_path, monkeypatch):
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    tokenizer_folder = save_tiny("llama", tmp_path / "model")  # the base model's tokenizer, for lm-eval
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps(doc) + "\n" for doc in DOCS))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "tiny.yaml").write_text(TASK.format(data=data))
    with serving(base, fill_prompts(base, tmp_path / "prompts")) as srv:
        model_args = {
            "model": "gen", "base_url": f"{srv.url}/v1/completions", "tokenizer": str(tokenizer_folder),
            "tokenizer_backend": "huggingface", "num_concurrent": 1, "max_retries": 1,
        }  # fmt: skip
        out = lm_eval.simple_evaluate(
            model="local-completions", model_args=model_args, tasks=["softprompt_tiny"],
            task_manager=TaskManager(include_path=str(tmp_path / "tasks")), log_samples=True,
        )  # fmt: skip
        state = srv.predictor.state("gen")
    samples = out["samples"]["softprompt_tiny"]
    assert len(samples) == len(DOCS)
    for sample in samples:
        for (context, continuation), ((got, _greedy),) in zip(sample["arguments"], sample["resps"]):
            ids = base.encode(context + continuation)  # byte-level: the pair's tokens are the joint text's
            start = len(base.encode(context))
            logp = input_logits(base, state, pad_batch([ids], base.pad_token_id))[0].float().log_softmax(-1)
            want = sum(float(logp[j - 1, ids[j]]) for j in range(start, len(ids)))
            assert got == pytest.approx(want, abs=1e-3)
    assert 0.0 <= out["results"]["softprompt_tiny"]["acc,none"] <= 1.0
