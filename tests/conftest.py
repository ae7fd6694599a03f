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
