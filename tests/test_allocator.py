"""Freed memory goes back to the system on glibc, and nothing happens elsewhere."""

import os

import pytest

from softprompt import allocator


def test_applies_on_glibc_linux():
    try:
        glibc = bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError, AttributeError):
        glibc = False
    assert allocator.return_freed_memory() is glibc


def test_does_nothing_without_glibc(monkeypatch):
    def no_such_name(name):
        raise ValueError("unrecognized configuration name")

    allocator._glibc.cache_clear()
    monkeypatch.setattr(os, "confstr", no_such_name)
    try:
        assert allocator.return_freed_memory() is False
    finally:
        allocator._glibc.cache_clear()


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantised_loads_hand_freed_memory_back(mode, monkeypatch):
    from softprompt import models
    from softprompt.quant import Quantization
    from softprompt.testing import tiny_base

    calls = []
    monkeypatch.setattr(models, "return_freed_memory", lambda: calls.append(1) or True)
    models.quantize_base(tiny_base("llama"), Quantization(mode))
    assert calls
