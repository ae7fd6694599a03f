"""The official `openai` client against `serve` on a loopback socket: what a user of the OpenAI API would call."""

from __future__ import annotations

import json

import openai
import pytest

from softprompt.decode import GenerationConfig
from softprompt.forward import input_logits, pad_batch
from softprompt.recipe import RunSpec, run_training
from softprompt.testing import tiny_chat_base

from .conftest import fill_prompts, save_prompt, serving

CONVERSATION = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]


@pytest.fixture(scope="module")
def chat_base():
    return tiny_chat_base("llama", "qwen2")  # its own tokenizer: the chat template does not leak into other tests


@pytest.fixture(scope="module")
def server(chat_base, tmp_path_factory):
    folder = fill_prompts(chat_base, tmp_path_factory.mktemp("prompts"))
    save_prompt(chat_base, folder / "gen5", t=5, seed=4, task="generate")
    train_chat_prompt(chat_base, folder / "chat", tmp_path_factory.mktemp("data"))
    with serving(chat_base, folder) as srv:
        yield srv


def train_chat_prompt(base, folder, scratch):
    """A prompt trained (a few steps) on conversations: the `chat` task."""
    data = scratch / "chat.jsonl"
    rows = [[*CONVERSATION[:1], {"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "ok"}] for i in range(12)]  # fmt: skip
    data.write_text("".join(json.dumps({"messages": r}) + "\n" for r in rows))
    spec = RunSpec(data=str(data), task="chat", settings={"steps": 2, "num_virtual_tokens": 3, "batch_size": 4})
    result = run_training(spec, scratch / "run", base, show_progress=False)
    result.prompt.save(folder, base)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


def alone(server, name, text, max_tokens, **config) -> str:
    return server.predictor.generate([(name, text)], GenerationConfig(max_tokens, **config))[0]


def test_models_list_and_retrieve(client):
    models = {m.id: m for m in client.models.list()}
    assert set(models) == {"tiny-llama", "chat", "gen", "gen5", "sent", "sent-multi"}
    assert models["gen"].parent == "tiny-llama" and models["tiny-llama"].parent is None
    assert client.models.retrieve("gen5").id == "gen5"
    assert client.models.retrieve("tiny-llama").owned_by == "softprompt"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_completion_plain_counts_what_the_model_saw(server, client, chat_base):
    done = client.completions.create(model="gen", prompt="hello", max_tokens=6, temperature=0)
    assert done.choices[0].text == alone(server, "gen", "hello", 6)
    assert done.choices[0].finish_reason in ("stop", "length")
    seen = len(chat_base.encode("Q: hello\nA:"))  # the prompt's template around the text
    assert done.usage.prompt_tokens == 3 + seen and done.usage.virtual_tokens == 3  # + the prompt's 3 virtual
    assert done.usage.completion_tokens == 6 and done.usage.total_tokens == 9 + seen


def test_completion_streamed_gives_the_same_text_and_a_usage_chunk(client):
    args = dict(model="gen", prompt=["hello", "a longer question"], max_tokens=7, temperature=0)
    whole = client.completions.create(**args)
    chunks = list(client.completions.create(**args, stream=True, stream_options={"include_usage": True}))
    texts, finish = ["", ""], [None, None]
    for chunk in chunks[:-1]:
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            finish[choice.index] = choice.finish_reason or finish[choice.index]
    assert texts == [c.text for c in whole.choices] and finish == [c.finish_reason for c in whole.choices]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens


def test_completion_list_of_prompts_and_n(server, client):
    prompts = ["one", "two words", "three words here"]
    done = client.completions.create(model="gen5", prompt=prompts, max_tokens=5, temperature=0)
    assert [c.index for c in done.choices] == [0, 1, 2]
    assert [c.text for c in done.choices] == [alone(server, "gen5", p, 5) for p in prompts]
    sampled = client.completions.create(model="gen", prompt=prompts[:2], max_tokens=8, n=3, seed=5, temperature=1.0)
    assert [c.index for c in sampled.choices] == list(range(6))  # prompt i's choices are 3i..3i+2
    texts = [c.text for c in sampled.choices]
    assert len(set(texts[:3])) > 1  # choice j samples with seed + j
    again = client.completions.create(model="gen", prompt=prompts[:2], max_tokens=8, n=3, seed=5, temperature=1.0)
    assert [c.text for c in again.choices] == texts
    assert sampled.usage.prompt_tokens == sum(
        3 + len(server.predictor.generation_input("gen", p)[1]) for p in prompts[:2]
    )


def test_completion_stop_and_seed(server, client):
    free = client.completions.create(model="gen", prompt="stop here", max_tokens=12, temperature=0).choices[0].text
    stop = free[3:5]
    cut = client.completions.create(model="gen", prompt="stop here", max_tokens=12, temperature=0, stop=[stop])
    assert cut.choices[0].text == free[: free.index(stop)] and cut.choices[0].finish_reason == "stop"
    args = dict(model="gen", prompt="seeded", max_tokens=8, temperature=0.8, top_p=0.9, seed=42)
    first = client.completions.create(**args).choices[0].text
    assert client.completions.create(**args).choices[0].text == first
    assert first == alone(server, "gen", "seeded", 8, temperature=0.8, top_p=0.9, seed=42)


def test_completion_logprobs_are_the_models_top_tokens(client):
    done = client.completions.create(model="gen", prompt="hello", max_tokens=5, temperature=0, logprobs=2)
    logprobs = done.choices[0].logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == 5
    for chosen, top in zip(logprobs.token_logprobs, logprobs.top_logprobs):
        assert len(top) == 2 and chosen == max(top.values()) and chosen <= 0  # greedy: the most likely token
    assert logprobs.text_offset[0] == 0


def test_echo_with_zero_tokens_scores_the_prompt_as_lm_eval_does(server, client, chat_base):
    text = "the cat sat on the mat"
    done = client.completions.create(
        model="tiny-llama", prompt=text, max_tokens=0, echo=True, logprobs=1, temperature=0
    )  # the bare model: no prompt, no template
    choice = done.choices[0]
    ids = chat_base.encode(text)
    assert choice.text == text and choice.logprobs.token_logprobs[0] is None
    want = input_logits(chat_base, None, pad_batch([ids], chat_base.pad_token_id))[0].float().log_softmax(-1)
    assert choice.logprobs.token_logprobs[1:] == pytest.approx(
        [float(want[j - 1, ids[j]]) for j in range(1, len(ids))], abs=1e-4
    )
    assert done.usage.prompt_tokens == len(ids) and done.usage.completion_tokens == 0
    # With one new token, as lm-evaluation-harness's local-completions asks: the prompt's scores, then the token.
    one = client.completions.create(model="tiny-llama", prompt=text, max_tokens=1, echo=True, logprobs=1, temperature=0)
    assert one.choices[0].logprobs.token_logprobs[: len(ids)] == pytest.approx(choice.logprobs.token_logprobs)
    assert len(one.choices[0].logprobs.tokens) == len(ids) + 1


def test_token_id_prompts_and_template_false_are_taken_verbatim(server, client, chat_base):
    ids = chat_base.encode("Q: raw\nA:")
    by_ids = client.completions.create(model="gen", prompt=ids, max_tokens=5, temperature=0)
    by_text = client.completions.create(
        model="gen", prompt="Q: raw\nA:", max_tokens=5, temperature=0, extra_body={"template": False}
    )
    templated = client.completions.create(model="gen", prompt="raw", max_tokens=5, temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text == templated.choices[0].text
    assert by_ids.usage.prompt_tokens == by_text.usage.prompt_tokens == 3 + len(ids)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"suffix": "x"}, "suffix"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": 1.0}, "frequency_penalty"),
        ({"best_of": 3}, "best_of"),
        ({"logit_bias": {"5": 1.0}}, "logit_bias"),
        ({"extra_body": {"no_such_field": 1}}, "no_such_field"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_what_is_not_supported_is_refused_not_ignored(client, args, field):
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        client.completions.create(model="gen", prompt="x", **{"max_tokens": 3, **args})
    assert field in str(refused.value)


def test_chat_with_a_chat_trained_prompt_is_what_generate_gives_for_the_messages(server, client, chat_base):
    done = client.chat.completions.create(model="chat", messages=CONVERSATION, max_tokens=6, temperature=0)
    # `softprompt generate` / `predict` take the same messages (as JSON) and render them as training did.
    assert done.choices[0].message.content == alone(server, "chat", json.dumps(CONVERSATION), 6)
    rendered = chat_base.tokenizer.apply_chat_template(CONVERSATION, add_generation_prompt=True, tokenize=False)
    assert done.usage.prompt_tokens == 3 + len(chat_base.encode(rendered))  # exactly the chat template's tokens
    # Without the system message the one the training rows shared is put first, as in training.
    bare = client.chat.completions.create(model="chat", messages=CONVERSATION[1:], max_tokens=6, temperature=0)
    assert bare.choices[0].message.content == done.choices[0].message.content
    assert bare.usage.prompt_tokens == done.usage.prompt_tokens
    # The training rows shared that system message, so the prompt sits after it: the system turn's tokens and
    # the 3 virtual tokens are the prompt's prefix (usage.virtual_tokens counts the prefix).
    assert server.predictor.prompts["chat"].meta.placement == "after_system"
    head = chat_base.tokenizer.apply_chat_template(CONVERSATION[:1], tokenize=False)
    assert done.usage.virtual_tokens == 3 + len(chat_base.encode(head))
    # Another system message: refused, naming the one the prompt was trained after.
    with pytest.raises(openai.UnprocessableEntityError, match="trained after the system message 'be brief'"):
        other = [{"role": "system", "content": "be long"}, CONVERSATION[1]]
        client.chat.completions.create(model="chat", messages=other, max_tokens=6)


def test_chat_to_a_template_prompt_goes_through_its_template(server, client, chat_base):
    messages = CONVERSATION[1:]
    done = client.chat.completions.create(model="gen", messages=messages, max_tokens=6, temperature=0)
    want = client.completions.create(model="gen", prompt="hi there", max_tokens=6, temperature=0)
    assert done.object == "chat.completion" and done.choices[0].message.role == "assistant"
    assert done.choices[0].message.content == want.choices[0].text
    assert done.usage.prompt_tokens == 3 + len(chat_base.encode("Q: hi there\nA:"))
    with pytest.raises(openai.UnprocessableEntityError, match="trained on the text template"):
        client.chat.completions.create(model="gen", messages=CONVERSATION, max_tokens=6)
    stream = client.chat.completions.create(
        model="gen", messages=messages, max_tokens=6, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == done.choices[0].message.content
    assert chunks[-2].choices[0].finish_reason == done.choices[0].finish_reason
    assert chunks[-1].usage.prompt_tokens == done.usage.prompt_tokens


def test_chat_with_the_bare_model_and_logprobs(client):
    done = client.chat.completions.create(
        model="tiny-llama", messages=[{"role": "user", "content": "hello"}], max_completion_tokens=4, temperature=0,
        logprobs=True, top_logprobs=3,
    )  # fmt: skip
    content = done.choices[0].logprobs.content
    assert len(content) == 4 and all(len(t.top_logprobs) == 3 for t in content)
    assert all(t.logprob == t.top_logprobs[0].logprob for t in content)  # greedy
    assert done.usage.virtual_tokens == 0


def test_chat_refusals(client):
    with pytest.raises(openai.UnprocessableEntityError, match="tools"):
        client.chat.completions.create(
            model="gen", messages=[{"role": "user", "content": "x"}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        )  # fmt: skip
    with pytest.raises(openai.UnprocessableEntityError, match="response_format"):
        client.chat.completions.create(
            model="gen", messages=[{"role": "user", "content": "x"}], response_format={"type": "json_object"}
        )
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
