"""StudioSettings: the studio's caps and quotas (each a `softprompt studio` flag), validated once.

A studio is left running on a laptop: without bounds a page (or a careless click) could queue
days of training or fill the disk. Jobs asking for more than a cap are refused with 422, a full
queue with 429, and an upload past the quota with 413; the page deletes what is no longer needed.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field

from ..errors import FieldError
from ..typecheck import check_field_types

MIB = 1 << 20


def cap(default: int, help: str, flag: str) -> Field:
    """A StudioSettings field with its `softprompt studio` flag (a `_bytes` field's flag counts MiB) and help."""
    return field(default=default, metadata={"help": help, "flag": flag})


@dataclass(frozen=True)
class StudioSettings:
    max_upload_bytes: int = cap(20 * MIB, "largest data file accepted", "--max-upload-mb")
    max_uploads_bytes: int = cap(1024 * MIB, "all uploads together", "--uploads-quota-mb")
    max_queued_jobs: int = cap(10, "jobs queued or running at once (one more gets 429)", "--max-queued-jobs")
    max_jobs: int = cap(200, "job folders kept; delete finished ones to make room", "--max-jobs")
    max_steps: int = cap(10_000, "steps of one job", "--max-steps")
    max_batch_size: int = cap(256, "batch size of one job", "--max-batch-size")
    max_num_virtual_tokens: int = cap(512, "prompt length cap", "--max-num-virtual-tokens")
    max_cache_bytes: int = cap(64 * MIB, "cached inspect plots; the oldest go first", "--cache-quota-mb")

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
