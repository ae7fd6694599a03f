"""A new prompt method is one class plus a registration: this file adds one, with no edit anywhere in src/.

The toy method scales each virtual token by a learned number: its weights are [T, d + 1], the last
column the scales. Registered, it trains through the ordinary run set-up, saves and loads as a prompt
folder of its own PEFT type, is offered by `train --method` and TrainConfig, and is served over a real
socket beside nothing else that knows of it.
"""

from __future__ import annotations

import json

import httpx
import pytest
import torch

from serve.conftest import serving
from softprompt.cli import build_parser
from softprompt.errors import SoftPromptError
from softprompt.forward import PromptState, prompt_state
from softprompt.infer import Predictor
from softprompt.models import BaseModel, load_base_model
from softprompt.prompts.base import BasePrompt
from softprompt.prompts.files import peft_common
from softprompt.prompts.initialize import Start
from softprompt.prompts.meta import PromptMeta
from softprompt.prompts.methods import load_prompt, prompt_class, register_prompt_method, unregister_prompt_method
from softprompt.prompts.plain import SoftPrompt
from softprompt.prompts.registry import Method, Recipe, method_names
from softprompt.recipe import RunSpec, run_training
from softprompt.testing import save_tiny
from softprompt.train_config import TrainConfig


class ScaledPrompt(BasePrompt):
    """T input vectors, each times a learned scale (starting at 1): [T, d + 1], the scales in the last column."""

    METHOD = "scaled"
    PEFT_TYPE = "SCALED_PROMPT_TUNING"
    WEIGHTS = "scaled"  # BasePrompt holds them as this parameter: `weights`

    @property
    def token_dim(self) -> int:
        return self.scaled.shape[1] - 1

    def layout(self) -> dict[str, int]:
        return {"dim": self.token_dim}

    @classmethod
    def initial_weights(cls, base: BaseModel, start: Start) -> torch.Tensor:
        vectors = SoftPrompt.initial_weights(base, start)  # a plain prompt's start, every scale at 1
        return torch.cat([vectors, torch.ones(start.num_virtual_tokens, 1)], dim=1)

    @classmethod
    def of_weights(cls, base: BaseModel, weights: torch.Tensor, meta: PromptMeta) -> ScaledPrompt:
        return cls(weights, meta, weights)

    @classmethod
    def state_of(cls, base: BaseModel, weights: torch.Tensor, *, share_prefix: bool = True) -> PromptState:
        return prompt_state(base, weights[:, :-1] * weights[:, -1:], share_prefix=share_prefix)

    def with_weights(self, weights: torch.Tensor, meta: PromptMeta | None = None) -> ScaledPrompt:
        return ScaledPrompt(weights, meta or self.meta, self.initial)

    def peft_config(self, base: BaseModel | None) -> dict:
        return {**peft_common(self.meta.base_model, self.num_virtual_tokens, base, self.PEFT_TYPE), "token_dim": 0}

    @classmethod
    def _from_file(cls, config, tensor, meta, initial, where) -> ScaledPrompt:
        return cls(tensor, meta, initial)

    def _misfit(self, base: BaseModel) -> str | None:
        if self.token_dim != base.hidden_size:
            return f"the prompt has dimension {self.token_dim} but model '{base.name}' has {base.hidden_size}"
        return None


SCALED = Method(
    "scaled",
    "SCALED_PROMPT_TUNING",
    "T input vectors, each scaled by a learned number (a toy method of the tests)",
    Recipe(num_virtual_tokens=4, lr={"none": 0.05, "mlp": 0.01, "residual": 0.01}),
)
REVIEWS = [("a fine warm film", "pos"), ("dull and far too long", "neg"), ("lovely acting", "pos"), ("a mess", "neg")]


@pytest.fixture(scope="module")
def registered():
    """The registration: the one step besides the class (undone after, so other tests see the built-in list)."""
    register_prompt_method(SCALED)(ScaledPrompt)
    yield ScaledPrompt
    unregister_prompt_method("scaled")


@pytest.fixture(scope="module")
def trained(registered, tmp_path_factory):
    root = tmp_path_factory.mktemp("scaled")
    model = str(save_tiny("llama", root / "model"))
    data = root / "reviews.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in REVIEWS * 3))
    base = load_base_model(model)
    spec = RunSpec(data=str(data), settings={"method": "scaled", "steps": 4, "batch_size": 4})
    result = run_training(spec, root / "prompts" / "toy", base, show_progress=False)
    return root, base, result


def test_the_method_is_offered_wherever_a_method_is_chosen(registered):
    assert "scaled" in method_names() and prompt_class("scaled") is ScaledPrompt
    config = TrainConfig(method="scaled")
    assert config.num_virtual_tokens == 4 and config.learning_rate == 0.05  # its recipe fills the unset fields
    args = build_parser().parse_args(["train", "--data", "x.jsonl", "--method", "scaled"])
    assert args.method == "scaled"


def test_it_trains_saves_and_loads_as_its_own_kind_of_folder(trained):
    _, base, result = trained
    assert result.steps == 4
    assert json.loads((result.out / "adapter_config.json").read_text())["peft_type"] == "SCALED_PROMPT_TUNING"
    loaded = load_prompt(result.out, base)
    assert isinstance(loaded, ScaledPrompt) and loaded.weights.shape == (4, base.hidden_size + 1)
    assert not torch.equal(loaded.weights[:, -1], torch.ones(4))  # the scales trained
    torch.testing.assert_close(loaded.weights, result.prompt.weights.detach())
    with pytest.raises(SoftPromptError, match="cannot be inspected"):
        loaded.inspect(base)  # no inspect hook given: a clear refusal, not a wrong picture


def test_it_is_served_over_a_real_socket(trained):
    root, base, result = trained
    texts = [t for t, _ in REVIEWS]
    with serving(base, root / "prompts") as server:
        listed = httpx.get(f"{server.url}/v1/prompts").json()["data"]
        assert [(p["name"], p["method"]) for p in listed] == [("toy", "scaled")]
        body = httpx.post(f"{server.url}/v1/classify", json={"prompt": "toy", "inputs": texts}).json()
    direct = Predictor(base)
    direct.add_prompt("toy", load_prompt(result.out, base))
    want = direct.classify([("toy", t) for t in texts])
    assert [r["label"] for r in body["results"]] == [w.label for w in want]
    for got, w in zip(body["results"], want):
        assert got["probs"] == pytest.approx(w.probs, abs=1e-5)
