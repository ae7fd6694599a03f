"""A new task kind is one class: this file adds one, and train, eval, predict and the CLI take it as they are."""

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F

from softprompt.cli import build_parser, main
from softprompt.data import Example
from softprompt.errors import SoftPromptError
from softprompt.evaluate import encode_eval_set, evaluate, predict
from softprompt.forward import pad_batch
from softprompt.infer import ClassifyResult, GenerationConfig, Predictor
from softprompt.models import load_base_model
from softprompt.prompts.meta import PromptMeta
from softprompt.prompts.plain import SoftPrompt
from softprompt.recipe import RunSpec, run_training
from softprompt.tasks import (
    Encoded,
    Task,
    describe_kinds,
    kind_has_labels,
    register_task,
    task_class,
    task_from_meta,
    task_kinds,
)
from softprompt.testing import save_tiny

YES_NO = {"yes": " yes", "no": " no"}


@register_task
@dataclass(frozen=True)
class YesNoTask(Task):
    """Answer a question yes or no, trained with a logistic loss on the two answers' score difference."""

    kind: ClassVar[str] = "yes_no"
    metric: ClassVar[str] = "accuracy"
    default_template: ClassVar[str] = "Question: {text}\nAnswer:"
    columns: ClassVar[tuple[str, str]] = ("question", "answer")
    output_field: ClassVar[str] = "label_column"
    has_labels: ClassVar[bool] = True
    default_init: ClassVar[str] = "labels"

    template: str

    @classmethod
    def build(cls, template, *, labels=None, output_column=None):
        if labels is not None and set(labels) != set(YES_NO):
            raise SoftPromptError(f"a yes_no task answers yes or no, not {sorted(labels)}")
        return cls(template)

    @classmethod
    def from_meta(cls, meta):
        return cls(meta.template)

    def meta_fields(self):
        return {"task": self.kind, "template": self.template, "verbalizer": dict(YES_NO)}

    @property
    def labels(self):
        return tuple(YES_NO)

    def label_token_ids(self, base):
        return [base.encode(words) for words in YES_NO.values()]

    def init_words(self):
        return list(YES_NO.values())

    def encode_target(self, base, target, where):
        return int(target == "yes")

    def collate(self, base, rows: Sequence[Encoded], *, side="left"):
        batch = pad_batch([r.ids for r in rows], base.pad_token_id, side=side, device=base.device)
        return batch, torch.tensor([float(r.target) for r in rows], device=base.device)

    def loss(self, base, prompt, batch, target):
        scores = self.label_scores(base, prompt, batch)
        return F.binary_cross_entropy_with_logits(scores[:, 0] - scores[:, 1], target)

    def predict(self, base, prompt, batch, *, golds=None):
        scores = self.label_scores(base, prompt, batch)
        return ["yes" if yes > no else "no" for yes, no in scores.tolist()]

    def report(self, predictions, golds):
        hits = sum(p == g for p, g in zip(predictions, golds))
        return {"n": len(golds), "accuracy": hits / len(golds), "yes_rate": predictions.count("yes") / len(golds)}


QUESTIONS = [("is the sky green", "no"), ("is water wet", "yes"), ("do fish fly", "no"), ("is fire hot", "yes")] * 3


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny model, a data file, and a prompt trained for the new kind through the ordinary run set-up."""
    root = tmp_path_factory.mktemp("yes_no")
    model = str(save_tiny("llama", root / "model"))
    data = root / "questions.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QUESTIONS))
    base = load_base_model(model)
    spec = RunSpec(
        data=str(data),
        task="yes_no",
        settings={"method": "prompt", "steps": 3, "batch_size": 4, "num_virtual_tokens": 4},
    )
    result = run_training(spec, root / "prompt", base, show_progress=False)
    return root, model, base, result


def test_the_kind_is_registered_everywhere_a_kind_is_chosen():
    assert "yes_no" in task_kinds() and task_class("yes_no") is YesNoTask and kind_has_labels("yes_no")
    assert {"kind": "yes_no", "default_template": YesNoTask.default_template}.items() <= describe_kinds()[-1].items()
    args = build_parser().parse_args(["train", "--data", "x.jsonl", "--task", "yes_no"])
    assert args.task == "yes_no"


def test_it_trains_through_the_run_set_up_and_its_prompt_file_names_it(run):
    _, _, _, result = run
    assert result.steps == 3 and result.metric == "accuracy"  # its own metric picked the best prompt
    saved = SoftPrompt.load(result.out)
    assert saved.meta.task == "yes_no" and task_from_meta(saved.meta) == YesNoTask("Question: {text}\nAnswer:")
    assert saved.meta.init == "labels"


def test_it_evaluates_and_predicts_with_its_own_report(run):
    _, _, base, result = run
    task = task_from_meta(result.prompt.meta)
    rows = encode_eval_set(base, task, [Example(q, a, "x") for q, a in QUESTIONS[:4]]).rows
    report = evaluate(base, task, result.prompt.embeddings, rows, batch_size=3)
    assert set(report) == {"n", "accuracy", "yes_rate"} and report["n"] == 4
    answers = predict(base, task, result.prompt.embeddings, rows)
    assert set(answers) <= {"yes", "no"}

    predictor = Predictor(base)
    predictor.add_prompt("qa", result.prompt)
    assert predictor.classifies("qa")
    served = predictor.classify([("qa", q) for q, _ in QUESTIONS[:4]])
    assert all(isinstance(r, ClassifyResult) for r in served)
    assert [r.label for r in served] == answers  # serving and evaluation agree on the new kind too
    assert isinstance(predictor.generate([("qa", "is ice cold")], GenerationConfig(max_new_tokens=3))[0], str)


def test_the_cli_predicts_and_evaluates_with_it(run, capsys, tmp_path):
    root, model, _, result = run
    texts = tmp_path / "in.txt"
    texts.write_text("is the sun bright\n")
    assert main(["predict", "--model", model, "--prompt", str(result.out), "--input", str(texts)]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["label"] in ("yes", "no") and set(line["probs"]) == {"yes", "no"}
    assert (
        main(["eval", "--model", model, "--prompt", str(result.out), "--data", str(root / "questions.jsonl"), "--json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["n"] == len(QUESTIONS)


def test_a_kind_name_is_taken_once():
    with pytest.raises(TypeError, match="taken"):

        @register_task
        @dataclass(frozen=True)
        class Impostor(YesNoTask):
            kind: ClassVar[str] = "classify"

    assert (
        task_from_meta(replace(PromptMeta(), task="classify", template="{text}", verbalizer=YES_NO)).kind == "classify"
    )


def test_task_kinds_are_listed_without_loading_torch():
    """The CLI's --help and the studio list kinds and their defaults before any model (or torch) is needed."""
    code = "import sys, softprompt.tasks as t; t.describe_kinds(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
