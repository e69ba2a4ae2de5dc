"""The engine's settings: batches, polling, retries, leases, rebuilds (``[worker]``).

``worker.ops.settings.WorkerSettings`` adds what only a deployed process needs (probes, logs)
and reads them from ``domain.toml`` and the environment.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from worker.store.read_schema import check_schema_name


class EngineSettings(BaseModel):
    """How the engine runs its consumers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(default=1000, ge=1, le=100_000)
    poll_interval_min: float = Field(default=0.01, gt=0)
    poll_interval_max: float = Field(default=1.0, gt=0)
    shutdown_deadline: float = Field(default=10.0, ge=0)
    max_attempts: int = Field(default=3, ge=1)
    on_failure: Literal["park", "stop"] = "park"
    retry_base_delay: float = Field(default=0.1, ge=0)
    retry_max_delay: float = Field(default=30.0, ge=0)
    notify: bool = True
    auto_rebuild: bool = False
    max_group_slots: int | None = Field(default=None, ge=1)
    lease_ttl: float = Field(default=15.0, ge=1.0, le=3600.0)
    # While a consumer is behind, the position of batches that wrote nothing in the database
    # may wait this long (seconds) to be committed; 0 commits it with every batch.
    position_interval: float = Field(default=1.0, ge=0, le=60)
    read_model_schema: str = "public"

    @field_validator("read_model_schema")
    @classmethod
    def _schema(cls, value: str) -> str:
        return check_schema_name(value)

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        for low, high in (
            ("poll_interval_min", "poll_interval_max"),
            ("retry_base_delay", "retry_max_delay"),
        ):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(
                    f"{low} ({getattr(self, low)}) is greater than {high} ({getattr(self, high)})"
                )
        return self
