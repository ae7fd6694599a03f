"""GET /studio/: the page, with this process's token in it."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from ..state import Studio

router = APIRouter()


@router.get("")
@router.get("/")
async def page(state: Studio) -> HTMLResponse:
    # no-store: the page carries this process's token.
    return HTMLResponse(state.page_html, headers={"Cache-Control": "no-store"})
