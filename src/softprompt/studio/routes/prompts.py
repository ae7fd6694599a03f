"""The prompts the studio serves: list, delete, inspect (table and plot), download as a zip; the plot cache."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from ...prompts.meta import trained_precision
from ...serve.app import APIError
from ...serve.registry import name_problem
from ..operations import draw_plot
from ..state import Studio, user_errors
from ..storage import trim_to

router = APIRouter()


@router.get("/api/prompts")
async def prompts(state: Studio) -> dict:
    """Prompts with task, labels, T, size and training figures; broken ones apart."""
    registry = state.registry
    listed, broken = [], []
    for name, entry in sorted(registry.infos.items()):
        try:
            listed.append(_prompt_entry(entry, state.predictor.prompts.get(name)))
        except Exception as e:  # one odd folder must not hide the others
            broken.append({"name": name, "error": f"cannot be shown: {e}"})
    broken += [{"name": name, "error": error} for name, error in sorted(registry.errors.items())]
    return {"data": listed, "broken": broken, "errors": dict(registry.errors)}


@router.delete("/api/prompts/{name}")
async def delete_prompt(name: str, state: Studio) -> dict:
    folder = state.folders.prompts / name
    if name_problem(name) or not folder.is_dir() or folder.is_symlink():
        raise APIError(404, f"no prompt folder named {name[:80]!r}", kind="not_found_error")
    await asyncio.to_thread(_remove_folder, folder)
    await state.batcher.call(state.registry.refresh)  # not served from now on, not only from the next poll
    return {"deleted": name}


@router.get("/api/prompts/{name}/inspect")
async def inspect(name: str, state: Studio, top_k: int = 5) -> dict:
    """The nearest-token table (JSON)."""

    prompt = state.loaded(name)
    with user_errors():
        result = await asyncio.to_thread(prompt.inspect, state.base, top_k=top_k)
    return result.to_dict()


@router.get("/api/prompts/{name}/plot.png")
async def plot(name: str, state: Studio) -> FileResponse:
    """The inspect plot, drawn once per prompt's weights and kept in cache/."""
    from ...prompt_cache import prompt_hash

    prompt = state.loaded(name)
    cache = state.folders.cache
    path = cache / f"plot-{name}-{prompt_hash(prompt.weights)}.png"
    await asyncio.to_thread(
        draw_plot,
        prompt,
        state.base,
        path,
        lock=state.plot_lock,
        cache=cache,
        max_cache_bytes=state.limits.max_cache_bytes,
    )
    return FileResponse(path, media_type="image/png")


@router.delete("/api/cache")
async def clear_cache(state: Studio) -> dict:
    """Remove the cached plots."""

    def clear() -> int:
        with state.plot_lock:
            return trim_to(state.folders.cache, 0)

    return {"deleted_bytes": await asyncio.to_thread(clear)}


@router.get("/api/prompts/{name}/download")
async def download(name: str, state: Studio) -> Response:
    """The prompt folder as a zip."""
    state.loaded(name)
    registry = state.registry
    folder = (registry.folder / name).resolve()
    if not folder.is_relative_to(registry.root) or not folder.is_dir():
        raise APIError(404, f"no prompt folder for {name!r}", kind="not_found_error")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for item in sorted(folder.iterdir()):
            if item.is_file() and not item.is_symlink() and not item.name.startswith("."):
                z.write(item, f"{name}/{item.name}")
    headers = {"Content-Disposition": f'attachment; filename="{name}.zip"'}
    return Response(buffer.getvalue(), media_type="application/zip", headers=headers)


def _prompt_entry(info, prompt) -> dict:
    """One prompt as the page lists it; raises on metadata that cannot be shown (the caller lists it as broken)."""
    training = {} if prompt is None else prompt.meta.training
    if not isinstance(training, dict):
        raise ValueError(f"its metadata field 'training' is {type(training).__name__}, not an object")
    precision = None if prompt is None else trained_precision(prompt.meta)
    entry = {**dataclasses.asdict(info), "training": dict(training), "trained_precision": precision}
    json.dumps(entry, allow_nan=False)  # what the response will do: fail here, for this prompt only
    return entry


def _remove_folder(folder: Path) -> None:
    """Rename the folder aside first (one atomic step for readers), then delete it."""
    aside = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".deleted", dir=folder.parent))
    folder.rename(aside / folder.name)
    shutil.rmtree(aside, ignore_errors=True)
