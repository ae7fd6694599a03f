"""Uploaded data files: POST /studio/api/uploads?filename=F (raw body), list, delete."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from ...serve.app import APIError
from ..state import Studio, user_errors

router = APIRouter()


@router.post("/api/uploads")
async def upload(request: Request, state: Studio, filename: str = "") -> dict:
    """Save the body as a file; answers its columns, a preview and guesses."""
    with user_errors():
        saved = await state.uploads.save(filename, request.stream())
    return saved.to_dict()


@router.get("/api/uploads")
async def list_uploads(state: Studio) -> dict:
    return {"data": await asyncio.to_thread(state.uploads.list)}


@router.delete("/api/uploads/{upload_id}")
async def delete_upload(upload_id: str, state: Studio) -> dict:
    user = state.active_job(lambda j: j.spec.get("data") == upload_id)
    if user is not None:
        raise APIError(409, f"job {user.id} ({user.state}) trains on this file; stop it before deleting the file")
    with user_errors():
        await asyncio.to_thread(state.uploads.delete, upload_id)
    return {"deleted": upload_id}
