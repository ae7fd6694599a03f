import pytest

from softprompt.testing import tiny_base


@pytest.fixture(scope="session")
def tiny_models():
    """One frozen tiny model per architecture, built once per test session."""
    cache = {}

    def get(kind: str):
        if kind not in cache:
            cache[kind] = tiny_base(kind)
        return cache[kind]

    return get


@pytest.fixture
def forbid_model_load(monkeypatch):
    """`forbid_model_load("before ...")`: from then on, loading any model fails the test with that reason.

    It patches a step inside `models.load_base_model`, not the function itself: a module first
    imported while the patch holds (`from ..models import load_base_model`) would keep a fake
    function after the test, and fail tests that run later.
    """

    def forbid(why: str) -> None:
        def no_model(*args, **kwargs):
            raise AssertionError(f"the model must not load {why}")

        monkeypatch.setattr("softprompt.models._resolve_to_folder", no_model)
        monkeypatch.setattr("softprompt.models.locate", no_model)  # the quantised loaders start there

    return forbid
