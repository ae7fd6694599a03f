"""Where a chat prompt sits: after the system turn its training rows shared, the same at training and serving."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from softprompt.data import load_examples
from softprompt.decode import GenerationConfig, eos_token_ids, generate_texts
from softprompt.engine import Engine
from softprompt.engine import Sequence as EngineSequence
from softprompt.errors import SoftPromptError
from softprompt.evaluate import encode_eval_set, evaluate
from softprompt.forward import DecoderRun, hidden_states, pad_batch, prompt_state
from softprompt.infer import Predictor
from softprompt.prompts.files import METADATA_KEY, WEIGHTS_FILE
from softprompt.prompts.meta import PromptMeta
from softprompt.prompts.plain import SoftPrompt
from softprompt.prompts.prefix import PrefixPrompt
from softprompt.prompts.reparam import TrainablePrompt
from softprompt.tasks import task_from_meta
from softprompt.tasks.chat import (
    AFTER_SYSTEM,
    FIRST,
    ChatClassifyTask,
    ChatTask,
    placement_note,
    render_chat,
    system_turn_ids,
)
from softprompt.testing import CHAT_TEMPLATES, MULTI_TURN, tiny_chat_base

MULTI = list(MULTI_TURN)
SYSTEM = MULTI[0]["content"]


@pytest.fixture(scope="module", params=sorted(CHAT_TEMPLATES))
def base(request):
    return tiny_chat_base("llama", request.param)


def chats(tmp_path, systems=(SYSTEM, SYSTEM, SYSTEM)):
    path = tmp_path / "c.jsonl"
    rows = [
        [{"role": "system", "content": s}, {"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]
        for i, s in enumerate(systems)
    ]
    path.write_text("".join(json.dumps({"messages": r}) + "\n" for r in rows))
    return load_examples(path, messages=True).examples


def placed_prompt(base, task, method=SoftPrompt, t=3, seed=0):
    return method.initialize(base, t, "random", seed=seed, meta=PromptMeta(**task.meta_fields()))


def test_a_shared_system_message_places_the_prompt_after_it(tmp_path):
    task = ChatTask().with_data(chats(tmp_path))
    assert (task.system, task.placement) == (SYSTEM, AFTER_SYSTEM)
    assert task.meta_fields()["placement"] == AFTER_SYSTEM
    assert task_from_meta(PromptMeta(**task.meta_fields())) == task
    # Rows with different system messages: nothing shared to sit after, so first.
    mixed = ChatTask().with_data(chats(tmp_path, (SYSTEM, SYSTEM, "Be long.")))
    assert (mixed.system, mixed.placement) == (None, FIRST)
    assert "do not all share one system message: the prompt sits first" in placement_note(mixed)
    # Scoring takes the placement from the prompt; the bare model has nothing to hold a system turn: first.
    assert task.for_prompt(None).placement == FIRST
    assert ChatTask().for_prompt(PromptMeta(**task.meta_fields())) == task


def test_training_rendering_is_the_serving_rendering_token_for_token(base, tmp_path):
    task = ChatTask().with_data(chats(tmp_path))
    head = system_turn_ids(base, SYSTEM)
    assert SYSTEM in base.tokenizer.decode(head) and "q0" not in base.tokenizer.decode(head)
    row = task.encode(base, json.dumps(MULTI), "Rome")
    # The prefix's system turn, then the row: the whole rendering by the model's own template, token for token.
    whole = render_chat(base, MULTI, answer=True).ids
    assert list(head) + list(row.ids) + list(row.target) == whole
    full = base.tokenizer.apply_chat_template(MULTI, tokenize=False)
    assert whole == base.encode(full)[: len(whole)]
    assert base.tokenizer.decode([(list(row.ids) + list(row.target))[p] for p in row.trained]).count("Rome") == 1
    # Serving: the same conversation without its answer, with the system message or without it, is the row's input.
    prompt = placed_prompt(base, task)
    predictor = Predictor(base)
    predictor.add_prompt("chat", prompt)
    for convo in (MULTI[:-1], MULTI[1:-1]):
        assert task.encode(base, json.dumps(convo)).ids == row.ids
        state, ids, _ = predictor.generation_input("chat", json.dumps(convo))
        assert ids == list(row.ids) and state.width == len(head) + 3
    # The prefix training builds (the trainer's TrainablePrompt) is the one serving builds.
    trained = TrainablePrompt(prompt).state(base)
    served = predictor.state("chat")
    for a, b in zip(trained.keys + trained.values, served.keys + served.values):
        assert torch.allclose(a, b, atol=1e-6)
    assert int(trained.lengths[0]) == int(served.lengths[0]) == len(head) + 3


def test_the_prefix_is_the_system_turn_then_the_prompt_at_the_positions_after_it(base, tmp_path):
    task = ChatTask().with_data(chats(tmp_path))
    head = system_turn_ids(base, SYSTEM)
    row = task.encode(base, json.dumps(MULTI[:2]))
    batch = pad_batch([row.ids], base.pad_token_id)
    # A plain prompt: its vectors run after the system turn's tokens, exactly as if all were one input.
    prompt = placed_prompt(base, task)
    got = hidden_states(base, prompt_state(base, prompt), batch)
    embeds = torch.cat(
        [base.embed(torch.tensor([head]))[0], prompt.weights.to(base.dtype), base.embed(batch.input_ids)[0]]
    )
    run = DecoderRun(base, None, 1)
    want = run.run(torch.ones(1, embeds.shape[0], dtype=torch.long), embeds=embeds.unsqueeze(0))[:, -len(row.ids) :]
    assert torch.allclose(got, want, atol=1e-5)
    inline = prompt.state(base, share_prefix=False)  # FSDP's path: the same numbers
    assert torch.allclose(hidden_states(base, inline, batch), want, atol=1e-5)
    # A deep prompt: the frozen model's keys/values of the system turn (no prompt before it), then its own.
    deep = placed_prompt(base, task, PrefixPrompt, t=2, seed=1)
    state = deep.state(base)
    alone = DecoderRun(base, None, 1)
    alone.run(torch.ones(1, len(head), dtype=torch.long), torch.tensor([head]))
    own = PrefixPrompt.state_of(base, deep.weights)
    for layer, cached in enumerate(alone.cache.layers):
        assert torch.allclose(state.keys[layer][:, :, : len(head)], cached.keys, atol=1e-6)
        assert torch.equal(state.values[layer][:, :, len(head) :], own.values[layer])
    assert int(state.lengths[0]) == state.width == len(head) + 2  # the row starts at position H + T


@pytest.mark.parametrize("method", [SoftPrompt, PrefixPrompt])
def test_the_serving_engine_generates_what_the_decoding_loop_does(method, tmp_path):
    """Continuous batching takes the placed prefix as one cached prompt prefix, rows starting at H + T."""
    base = tiny_chat_base("llama", "qwen2")
    task = ChatTask().with_data(chats(tmp_path))
    state = prompt_state(base, placed_prompt(base, task, method, seed=3)).detach()
    config = GenerationConfig(6)
    rows = [list(task.encode(base, json.dumps(c)).ids) for c in (MULTI[1:2], MULTI[:4])]
    engine = Engine(base, max_rows=2, step_tokens=8)
    seqs = [EngineSequence(state, r, config, 6, eos_token_ids(base), base.tokenizer) for r in rows]
    texts = {s: "" for s in seqs}
    for seq in seqs:
        engine.add(seq)
    for _ in range(50):
        for seq, delta in engine.step():
            texts[seq] += delta.text
        if not engine.busy:
            break
    alone = [generate_texts(base, state, pad_batch([r], base.pad_token_id), config)[0] for r in rows]
    assert [texts[s] for s in seqs] == alone


def test_another_system_message_is_refused_and_names_the_recorded_one(tmp_path):
    base = tiny_chat_base("llama", "qwen2")
    task = ChatTask().with_data(chats(tmp_path))
    other = json.dumps([{"role": "system", "content": "Be long."}, MULTI[1]])
    with pytest.raises(SoftPromptError, match=r"trained after the system message 'Be brief\.'"):
        task.encode(base, other)
    cls = ChatClassifyTask("{text}", {"a": "a", "b": "b"}, system=SYSTEM, placement=AFTER_SYSTEM)
    with pytest.raises(SoftPromptError, match="Be brief"):
        cls.encode(base, other)
    predictor = Predictor(base)
    predictor.add_prompt("chat", placed_prompt(base, task))
    with pytest.raises(SoftPromptError, match="Be brief"):
        predictor.generation_input("chat", other)


def test_an_older_prompt_without_the_field_sits_first_as_before(tmp_path):
    base = tiny_chat_base("llama", "qwen2")
    meta = PromptMeta(**ChatTask(system=SYSTEM).meta_fields())
    SoftPrompt.initialize(base, 3, "random", seed=0, meta=meta).save(tmp_path / "old", base)
    path = tmp_path / "old" / WEIGHTS_FILE  # as written before the field existed: no "placement" key
    with safe_open(path, "pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    raw = json.loads(metadata[METADATA_KEY])
    raw.pop("placement")
    save_file(tensors, path, metadata={**metadata, METADATA_KEY: json.dumps(raw)})
    old = SoftPrompt.load(tmp_path / "old", base)
    assert old.meta.placement is None and old.head_ids(base) == ()
    predictor = Predictor(base)
    predictor.add_prompt("old", old)
    state, ids, _ = predictor.generation_input("old", json.dumps(MULTI[1:2]))
    assert state.width == 3 and ids == render_chat(base, MULTI[1:2], answer=False, system=SYSTEM).ids
    (answer,) = predictor.generate([("old", json.dumps(MULTI[1:2]))], GenerationConfig(4))
    assert isinstance(answer, str)
    # Another system message is served, as before (the prompt is first, nothing to contradict).
    predictor.generation_input("old", json.dumps([{"role": "system", "content": "Be long."}, MULTI[1]]))


def test_scoring_refuses_rows_encoded_for_the_other_placement(tmp_path):
    base = tiny_chat_base("llama", "qwen2")
    task = ChatTask().with_data(chats(tmp_path))
    examples = chats(tmp_path)
    after = encode_eval_set(base, task, examples).rows
    with pytest.raises(SoftPromptError, match="encoded for a prompt placed after the system turn"):
        evaluate(base, task, None, after)  # the bare model has no prefix to hold the system turn
    first = task.for_prompt(None)
    assert evaluate(base, first, None, encode_eval_set(base, first, examples).rows)["n"] == 3
    old = SoftPrompt.initialize(base, 3, "random", meta=PromptMeta(**ChatTask(system=SYSTEM).meta_fields()))
    with pytest.raises(SoftPromptError, match="but the prompt is placed first"):
        evaluate(base, task, old, after)
    placed = placed_prompt(base, task)
    assert evaluate(base, task, placed, after)["n"] == 3


def test_a_placed_chat_classification_prompt_classifies_as_it_scores(tmp_path):
    base = tiny_chat_base("llama", "qwen2")
    examples = chats(tmp_path)
    task = ChatClassifyTask("{text}", {"a": "a", "b": "b"}).with_data(examples)
    assert task.placement == AFTER_SYSTEM
    prompt = placed_prompt(base, task, seed=5)
    predictor = Predictor(base)
    predictor.add_prompt("cc", prompt)
    with_system, without = json.dumps(MULTI[:2]), json.dumps(MULTI[1:2])
    got = predictor.classify([("cc", with_system), ("cc", without)])  # /v1/classify
    assert got[0].probs == pytest.approx(got[1].probs)
    rows = encode_eval_set(base, task, [examples[0].__class__(with_system, "a", "")]).rows
    assert evaluate(base, task, prompt, rows)["n"] == 1
    assert list(rows[0].ids) == predictor.generation_input("cc", without)[1]


@pytest.mark.parametrize("method", [SoftPrompt, PrefixPrompt])
def test_reparameterised_prompts_train_in_the_prefix_they_fold_into(method, tmp_path):
    """P-tuning's MLP / prefix tuning's projection: the prefix while training is the folded prompt's."""
    base = tiny_chat_base("llama", "qwen2")
    prompt = placed_prompt(base, ChatTask().with_data(chats(tmp_path)), method, seed=4)
    training = TrainablePrompt(prompt, "mlp", seed=0)
    with torch.no_grad():  # away from the init, where the MLP's output is exactly zero
        for param in training.parameters():
            param.add_(0.01)
    state, served = training.state(base), training.artefact().state(base)
    assert state.width == served.width == len(system_turn_ids(base, SYSTEM)) + prompt.num_virtual_tokens
    for a, b in zip(state.keys + state.values, served.keys + served.values):
        assert torch.allclose(a, b, atol=1e-5)
