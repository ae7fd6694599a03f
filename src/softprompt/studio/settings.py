"""StudioSettings: the studio's caps and quotas (each a `softprompt studio` flag), validated once.

A studio is left running on a laptop: without bounds a page (or a careless click) could queue
days of training or fill the disk. Jobs asking for more than a cap are refused with 422, a full
queue with 429, and an upload past the quota with 413; the page deletes what is no longer needed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FieldError
from ..typecheck import check_field_types

MIB = 1 << 20


@dataclass(frozen=True)
class StudioSettings:
    max_upload_bytes: int = 20 * MIB  # one data file
    max_uploads_bytes: int = 1024 * MIB  # all of uploads/ together
    max_queued_jobs: int = 10  # jobs queued or running; one more gets 429
    max_jobs: int = 200  # job folders kept in jobs/ (delete finished ones to make room)
    max_steps: int = 10_000  # steps of one job
    max_batch_size: int = 256
    max_num_virtual_tokens: int = 512
    max_cache_bytes: int = 64 * MIB  # inspect plots in cache/; the oldest are removed past this

    def __post_init__(self) -> None:
        check_field_types(self)
        for name in self.__dataclass_fields__:
            if getattr(self, name) < 1:
                raise FieldError(name, f"must be at least 1, got {getattr(self, name)}")

    def check_job(self, spec) -> None:
        """Refuse a job (runner.JobSpec) asking for more than the caps allow."""
        config = spec.config()
        asked = {
            "steps": config.total_steps(0),
            "batch_size": config.batch_size,
            "num_virtual_tokens": config.num_virtual_tokens,
        }
        for name, value in asked.items():
            top = getattr(self, f"max_{name}")
            if value > top:
                raise FieldError(
                    name, f"must be at most {top} in this studio (softprompt studio --max-{name.replace('_', '-')})"
                )
