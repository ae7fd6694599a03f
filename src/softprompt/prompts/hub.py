"""A prompt folder named by its Hugging Face Hub repository (`user/name`), fetched once."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import PromptFileError
from .files import CONFIG_FILE, INITIAL_FILE, WEIGHTS_FILE

HUB_FILES = (CONFIG_FILE, WEIGHTS_FILE, INITIAL_FILE)  # what from_pretrained fetches of a Hub repository
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def prompt_folder(name_or_path: str | Path, *, revision: str | None = None) -> Path:
    """A local prompt folder as given; a Hub repository id (`user/name`, not a local path) downloaded.

    Only a prompt folder's own files are fetched (huggingface_hub caches them, and
    answers from its cache when HF_HUB_OFFLINE=1). A name that is neither raises
    PromptFileError saying both.
    """
    path = Path(name_or_path).expanduser()
    if path.exists() or not _REPO_ID.fullmatch(str(name_or_path)):
        return path  # load() says what is wrong with a missing or broken folder
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name_or_path), revision=revision, allow_patterns=list(HUB_FILES)))
    except Exception as e:  # offline, unknown repository, no access: huggingface_hub raises many kinds
        reason = str(e).splitlines()[0][:200] if str(e) else ""
        raise PromptFileError(
            f"'{name_or_path}' is no prompt folder here, and fetching it from the Hugging Face Hub failed "
            f"({type(e).__name__}{': ' + reason if reason else ''}); check the name, or download it where there is "
            "a network and pass the folder"
        ) from None
