"""The chat task kinds on tiny models: rendering, which tokens are learned, training and serving alike."""

from __future__ import annotations

import json

import pytest
import torch

from softprompt.data import load_examples
from softprompt.errors import DataError, SoftPromptError
from softprompt.forward import causal_lm_loss, input_logits, pad_batch, prompt_state
from softprompt.infer import Predictor
from softprompt.prompts.meta import PromptMeta
from softprompt.prompts.plain import SoftPrompt
from softprompt.tasks import task_class, task_from_meta
from softprompt.tasks.chat import ChatClassifyTask, ChatTask, render_chat
from softprompt.testing import CHAT_TEMPLATES, MULTI_TURN, tiny_base, tiny_chat_base

MULTI = list(MULTI_TURN)


@pytest.fixture(scope="module", params=sorted(CHAT_TEMPLATES))
def base(request):
    return tiny_chat_base("llama", request.param)


def _text(base, ids) -> str:
    return base.tokenizer.decode(ids)


def test_training_rendering_is_the_serving_rendering_token_for_token(base):
    task = ChatTask()
    row = task.encode(base, json.dumps(MULTI), "Rome")
    full = base.tokenizer.apply_chat_template(MULTI, tokenize=False)
    # The rendering is the model's own chat template, tokenized as the tokenizer does, up to the final end of turn.
    assert list(row.ids) + list(row.target) == base.encode(full)[: len(row.ids) + len(row.target)]
    assert _text(base, row.target) == "Rome" + base.tokenizer.eos_token
    # What serving sees for the same conversation without its answer: exactly the tokens training saw before it.
    served = task.encode(base, json.dumps(MULTI[:-1]))
    assert served.ids == row.ids
    rendered = base.tokenizer.apply_chat_template(MULTI[:-1], tokenize=False, add_generation_prompt=True)
    assert list(served.ids) == base.encode(rendered)
    # ... and what the predictor (serve, predict, generate) feeds the model after the prompt's virtual tokens.
    prompt = SoftPrompt.initialize(base, 3, "random", seed=0, meta=PromptMeta(**task.meta_fields()))
    predictor = Predictor(base)
    predictor.add_prompt("chat", prompt)
    assert predictor.generation_input("chat", json.dumps(MULTI))[1] == list(row.ids)  # a final answer is dropped


def test_every_assistant_turn_is_learned_and_nothing_else(base):
    row = ChatTask().encode(base, json.dumps(MULTI), "Rome")
    seq = list(row.ids) + list(row.target)
    eos = base.tokenizer.eos_token
    assert _text(base, [seq[p] for p in row.trained]) == f"Paris{eos}Rome{eos}"
    # Learned positions are contiguous per turn: the two replies, each through its end-of-turn token.
    turns = [[p for p in row.trained if p < len(row.ids)], [p for p in row.trained if p >= len(row.ids)]]
    assert all(t == list(range(t[0], t[-1] + 1)) for t in turns)
    weighted = [*MULTI[:2], {**MULTI[2], "weight": 0}, *MULTI[3:]]
    row0 = ChatTask().encode(base, json.dumps(weighted), "Rome")
    assert _text(base, [seq[p] for p in row0.trained]) == f"Rome{eos}"


def test_the_loss_is_the_causal_loss_on_assistant_tokens_only(base):
    task = ChatTask()
    rows = [task.encode(base, json.dumps(MULTI), "Rome"), task.encode(base, json.dumps(MULTI[1:3]), "Paris")]
    prompt = SoftPrompt.initialize(base, 4, "random", seed=1)
    state = prompt_state(base, prompt)
    batch, target = task.collate(base, rows)
    got = task.loss(base, state, batch, target)
    # Reference: every position's logits, labels masked to -100 but at the learned tokens.
    want = []
    for row in rows:
        seq = list(row.ids) + list(row.target)
        labels = torch.full((1, len(seq)), -100)
        labels[0, list(row.trained)] = torch.tensor([seq[p] for p in row.trained])
        logits = input_logits(base, state, pad_batch([seq], base.pad_token_id))
        want.append((causal_lm_loss(logits, labels) * len(row.trained), len(row.trained)))
    assert torch.allclose(got, sum(w for w, _ in want) / sum(n for _, n in want), atol=1e-5)
    assert task.loss_terms(rows[0]) == 6 + 5  # "Paris<eos>" and "Rome<eos>": byte tokens


def test_classification_through_chat_scores_label_words_as_the_reply(base):
    task = ChatClassifyTask("{text}", {"city": " city", "country": "country"})
    convo = json.dumps([{"role": "user", "content": "Paris?"}, {"role": "assistant", "content": "city"}])
    row = task.encode(base, convo, "city")
    assert row.target == 0
    assert list(row.ids) == list(ChatTask().encode(base, convo).ids)
    assert [_text(base, ids) for ids in task.label_token_ids(base)] == ["city", "country"]  # no leading space
    meta = PromptMeta(**task.meta_fields())
    assert meta.format == "chat" and task_from_meta(meta) == task


def test_system_message_shared_by_training_rows_is_kept(base, tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [[MULTI[0], {"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}] for i in range(3)]
    path.write_text("".join(json.dumps({"messages": r}) + "\n" for r in rows))
    examples = load_examples(path, messages=True).examples
    task = ChatTask().with_data(examples)
    assert task.system == "Be brief."
    plain = task.encode(base, "q0")  # a plain text is the user's turn, after the training rows' system message
    assert plain.ids == task.encode(base, json.dumps(rows[0][:2])).ids
    assert (
        ChatTask().with_data([*examples[:2], examples[2].__class__('[{"role":"user","content":"x"}]', "", "")]).system
        is None
    )


def test_chat_rows_are_validated(tmp_path):
    path = tmp_path / "bad.jsonl"
    cases = {
        '{"messages": [{"role": "user", "content": "hi"}]}': "must end with an assistant turn",
        '{"messages": [{"role": "tool", "content": "x"}]}': "role 'tool' is not one of",
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "tools": [1]}': "'tools' is not supported",
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 2}]}': "'weight' must be 0 or 1",
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0}]}': "every assistant turn has weight 0",
        '{"messages": [{"role": "user", "content": ["x"]}]}': "'content' must be text",
        '{"text": "x"}': "missing column 'messages'",
    }
    for line, message in cases.items():
        path.write_text(line + "\n")
        with pytest.raises(DataError, match=message):
            load_examples(path, messages=True)


def test_a_model_without_chat_template_gets_one_clear_error():
    base = tiny_base("llama")
    with pytest.raises(SoftPromptError, match="has no chat template"):
        ChatTask().encode(base, "hello")


def test_the_kinds_are_registered_with_their_format():
    assert task_class("chat").format == "chat" and task_class("chat_classify").format == "chat"
    assert task_class("classify").format == "template"
    with pytest.raises(SoftPromptError, match="takes no --template"):
        ChatTask.build("Q: {text}")


def test_render_refuses_a_template_that_rewrites_earlier_turns():
    base = tiny_chat_base("llama", "qwen2")
    # Like Qwen3's, which drops earlier replies' reasoning: a turn renders differently once another follows.
    base.tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }}:{% if loop.last %}{{ m['content'] }}{% endif %}"
        "{{ eos_token }}{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
    )
    with pytest.raises(SoftPromptError, match="renders a conversation's earlier turns differently"):
        render_chat(base, MULTI, answer=True)


def test_a_chat_classification_prompt_classifies_and_generates_from_one_rendering(base):
    task = ChatClassifyTask("{text}", {"city": "city", "country": "country"}, system="Be brief.")
    prompt = SoftPrompt.initialize(base, 3, "random", seed=0, meta=PromptMeta(**task.meta_fields()))
    predictor = Predictor(base)
    predictor.add_prompt("cc", prompt)
    convo = json.dumps(MULTI[1:2])  # no system message: the task's goes first
    (result,) = predictor.classify([("cc", convo)])  # what /v1/classify answers
    assert result.label in ("city", "country") and sum(result.probs.values()) == pytest.approx(1)
    # /v1/chat/completions and /v1/classify see the same tokens: the conversation up to the assistant's reply.
    ids = predictor.generation_input("cc", convo)[1]
    assert (
        ids
        == list(task.encode(base, json.dumps(MULTI[:2])).ids)
        == list(ChatTask(system="Be brief.").encode(base, convo).ids)
    )


def test_chat_classification_learns_the_reply_through_its_end_of_turn(base):
    """Its loss is the chat loss of a conversation whose final reply is the label words."""
    task = ChatClassifyTask("{text}", {"city": "city", "country": "country"})
    convo = [MULTI[1], {"role": "assistant", "content": "country"}]
    prompt = SoftPrompt.initialize(base, 3, "random", seed=2)
    state = prompt_state(base, prompt)
    got = task.loss(base, state, *task.collate(base, [task.encode(base, json.dumps(convo), "country")]))
    chat = ChatTask()
    want = chat.loss(base, state, *chat.collate(base, [chat.encode(base, json.dumps(convo), "country")]))
    assert torch.allclose(got, want, atol=1e-5)
