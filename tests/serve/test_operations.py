"""Operations on a look-alike predictor: chunking, order, and stopping once cancelled."""

from __future__ import annotations

from types import SimpleNamespace

from softprompt.engine import Delta
from softprompt.infer import GenerationConfig, InputError
from softprompt.serve.operations import Classify, Completion, Generate, Prompted, gather


class Recorder:
    prompts = {"p": SimpleNamespace(num_virtual_tokens=2)}

    def __init__(self, steps: int = 5):
        self.calls, self.steps, self.closed = [], steps, False

    def classify(self, requests):
        self.calls.append([text for _, text in requests])
        return [f"label of {text}" for _, text in requests]

    def generation_input(self, name, text, template=True):
        return None, [ord(c) for c in text], 100

    def stream(self, requests, config, template=True):
        try:
            for step in range(self.steps):
                self.calls.append(step)
                yield [f"{step}"] * len(requests)
        finally:
            self.closed = True


def test_classify_runs_length_sorted_chunks_and_returns_results_in_request_order():
    model = Recorder()
    items = [("p", "ccc"), ("p", "a"), ("p", "bb"), ("p", "dddd"), ("p", "e")]
    results = Classify(rows_per_call=2).run(model, items, lambda: False)
    assert results == [f"label of {text}" for _, text in items]
    assert model.calls == [["a", "e"], ["bb", "ccc"], ["dddd"]]


def test_classify_stops_between_chunks_once_cancelled():
    model = Recorder()
    results = Classify(rows_per_call=1).run(model, [("p", "a"), ("p", "b"), ("p", "c")], lambda: bool(model.calls))
    assert model.calls == [["a"]] and results == ["label of a", None, None]


def test_generate_without_an_engine_gathers_steps_and_stops_decoding_once_cancelled():
    model = Recorder(steps=5)
    results = Generate(GenerationConfig(5)).run(model, [Prompted("p", "x"), Prompted("p", "yz")], lambda: False)
    assert [r.text for r in results] == ["01234"] * 2
    assert [r.input_ids for r in results] == [[ord("x")], [ord("y"), ord("z")]]  # what the model saw, for usage
    model = Recorder(steps=1000)
    Generate(GenerationConfig(5)).run(model, [Prompted("p", "x")], lambda: len(model.calls) >= 3)
    assert model.calls == [0, 1, 2] and model.closed  # the predictor's generator was closed, not left hanging


def test_equal_operations_share_a_batch_and_an_input_error_wins_over_text():
    assert Generate(GenerationConfig(5, stop=("a",))) == Generate(GenerationConfig(5, stop=("a",)))
    assert Generate(GenerationConfig(5)) != Generate(GenerationConfig(6)) and Classify(4) == Classify(4)
    assert Generate(GenerationConfig(5)) != Generate(GenerationConfig(5), logprobs=2)
    error = InputError("too long")
    a, b = gather([[error, None], [None, Delta(text="a")], [None, Delta(text="b", finish="stop")]], 2)
    assert a == error and isinstance(b, Completion) and (b.text, b.finish) == ("ab", "stop")


def test_a_prompt_removed_while_its_request_waited_answers_404_when_it_joins_the_engine():
    from softprompt.errors import PromptNotLoaded

    class Removed(Recorder):
        base = SimpleNamespace(tokenizer=SimpleNamespace(eos_token_id=None), model=None)

        def generation_input(self, name, text, template=True):
            raise PromptNotLoaded(f"no prompt named '{name}' (loaded: none)")

    rows, first = Generate(GenerationConfig(5)).join(Removed(), engine=None, items=[Prompted("p", "x")], cancelled=None)
    assert rows == [None] and first[0] == InputError("no prompt named 'p' (loaded: none)", status=404)
