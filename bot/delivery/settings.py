"""Settings of delivery: the durable inbound record, the reply outbox and the chat scheduler.

A light module (pydantic only): ``bot/settings.py`` composes it as the ``delivery`` section
(``NBHELP_DELIVERY__RETRY_FOR_S=600``, ``[delivery] retry_for_s = 600``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DeliverySettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    retry_for_s: float = Field(
        900.0,
        ge=10,
        le=86_400,
        description="a reply whose send keeps failing is retried (with backoff) for this long, "
        "across restarts, then given up",
    )
    retry_initial_s: float = Field(
        1.0, gt=0, le=60, description="first wait before retrying a failed send (then doubled)"
    )
    retry_max_s: float = Field(
        60.0, gt=0, le=3600, description="longest wait between retries of a failed send"
    )
    restart_attempts: int = Field(
        2,
        ge=0,
        le=10,
        description="times a request cut short by a restart is handled again before the person "
        "gets an apology instead",
    )
    quick_concurrency: int = Field(
        16, ge=1, le=1024, description="quick commands (/status, /help …) handled at once"
    )
    group_reserve: int = Field(
        2,
        ge=0,
        le=15,
        description="messages of a group's per-minute budget kept for answers to quick "
        "commands and alerts (not spent on /run answers and progress)",
    )
    combine_max: int = Field(
        20,
        ge=1,
        le=50,
        description="answers combined into one message when a busy chat's backlog exceeds its "
        "budget (1: never combine)",
    )
    progress_after_s: float = Field(
        3.0,
        ge=0,
        le=600,
        description="a chat shows its queue once a /run has waited this long",
    )
    progress_every_s: float = Field(
        5.0,
        ge=1,
        le=600,
        description="the chat's one progress message is edited at most this often",
    )
    keep_days: int = Field(
        7, ge=1, le=3650, description="finished requests and sent replies are kept this long"
    )
