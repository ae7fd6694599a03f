"""GET /studio/api/info (model, built-in datasets, defaults, caps), /studio/api/schema (the form's training
settings, from TrainConfig's declarations) and /studio/api/storage (use against quotas)."""

from __future__ import annotations

import asyncio
import dataclasses

from fastapi import APIRouter

from ...tasks import describe_kinds
from ..guard import TOKEN_HEADER
from ..runner import form_schema
from ..state import Studio
from ..storage import folder_bytes

router = APIRouter()


@router.get("/api/info")
async def info(state: Studio) -> dict:
    from ...data import BUILTIN_DATASETS
    from ...optim import DEFAULT_LR, OPTIMIZERS
    from ...prompts.registry import METHODS, REPARAMS
    from ...recipe import defaults
    from ...train_config import REPARAM_LR_SCALE

    return {
        "model": state.base.name,
        "quantization": str(state.base.quantization),  # --quantize: the precision the base model's weights are held in
        "max_upload_bytes": state.uploads.max_bytes,
        "defaults": defaults(),
        "tasks": describe_kinds(),
        "optimizers": [
            {"name": o, "lr": DEFAULT_LR[o]} for o in sorted(OPTIMIZERS, key=lambda o: o != defaults()["optimizer"])
        ],
        "methods": list(METHODS),
        "reparam_lr_scale": REPARAM_LR_SCALE,
        "reparams": list(REPARAMS),
        "limits": dataclasses.asdict(state.limits),
        "token_header": TOKEN_HEADER,
        "datasets": [
            {
                "name": d.name,
                "task": d.task,
                "template": d.template,
                "labels": dict(d.verbalizer),
                "description": d.description,
            }
            for d in BUILTIN_DATASETS.values()
        ],
    }


@router.get("/api/schema")
async def schema() -> dict:
    return form_schema()


@router.get("/api/storage")
async def storage(state: Studio) -> dict:
    def measure() -> dict:
        jobs = state.jobs
        kept = jobs.list()
        return {
            "uploads": {"bytes": state.uploads.used_bytes(), "quota": state.uploads.max_total_bytes},
            "jobs": {
                "count": len(kept),
                "max": jobs.max_kept,
                "active": sum(j.state in ("queued", "running") for j in kept),
                "max_active": jobs.max_active,
                "bytes": folder_bytes(state.folders.jobs),
            },
            "cache": {"bytes": folder_bytes(state.folders.cache), "quota": state.limits.max_cache_bytes},
        }

    return await asyncio.to_thread(measure)
