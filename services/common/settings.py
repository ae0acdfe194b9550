"""Configuration from environment variables (prefix `REHABGATE_`, plus plain `REDIS_URL`)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_consumer_name() -> str:
    """Unique per process: a restarted process never inherits a dead one's name by accident."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REHABGATE_", extra="ignore")

    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "REHABGATE_REDIS_URL"),
        description="Redis/Valkey to use; when unset, `rehabgate up` starts an embedded server.",
    )
    partitions: int = Field(default=1, ge=1, le=1024, description="Hash-tag partitions.")
    consumer: str = Field(default_factory=default_consumer_name)
    batch_size: int = Field(default=100, ge=1, le=10_000)
    claim_idle_ms: int = Field(
        default=30_000, ge=100, description="Pending this long, an entry is reclaimed."
    )
    max_deliveries: int = Field(
        default=5, ge=1, description="After this many deliveries an entry is dead-lettered."
    )
    retention_s: float = Field(
        default=7 * 24 * 3600,
        ge=0,
        description="Work-stream entries younger than this are never trimmed, even when consumed.",
    )
    trim_interval_s: float = Field(
        default=60, gt=0, description="How often each service trims the streams it consumes."
    )
    protocol_dirs: list[Path] = Field(
        default_factory=list, description="Extra directories of clinic protocol YAML files."
    )
    log_json: bool | None = Field(default=None, description="JSON logs; default: unless a TTY.")
    log_level: str = "INFO"
