"""`softprompt compare`: prompt tuning against hard prompts, LoRA and full fine-tuning on one task.

config.py (what runs), task_data.py (the shared task and splits), baselines.py
(zero/few-shot hard prompts), prompt_tuning.py (softprompt's trainer),
finetune.py (LoRA and full fine-tuning), forgetting.py (perplexity and a
second task, before and after), measure.py (parameters, bytes, time, memory),
result.py (one method's figures), report.py (Markdown, JSON, charts), run.py
(orchestration with resume).
"""
