"""Prompt methods: what trains, how it is stored, how it starts and how it is looked into.

- `registry`: the methods by name and their measured recipes (no torch: `--help` and the studio read it)
- `meta`: `PromptMeta`, what a prompt is for and where it came from
- `files`: the PEFT-readable folder (adapter_config.json + adapter_model.safetensors)
- `hub`: a prompt folder on the Hugging Face Hub
- `base`: `BasePrompt`, what every method's artefact shares (save, load, the wrong-model guard)
- `initialize`: the vectors a new prompt starts from (vocab, labels, text, random)
- `plain`: `SoftPrompt` (prompt tuning); `prefix` + `prefix_layout`: `PrefixPrompt` (deep prompts)
- `reparam`: training through an MLP or a residual network (P-tuning), folded away on save
- `methods`: the class of each method, `load_prompt`, `register_prompt_method` (a new method)
- `inspect_plain`, `inspect_prefix`, `plots`, `vocab`: each method's `inspect` hook

A new method is one module (a `BasePrompt` subclass) plus `@register_prompt_method(Method(...))`.
"""
