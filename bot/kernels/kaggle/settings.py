"""Settings of the Kaggle GPU backend (``/run --gpu`` as batch runs on Kaggle's free T4s).

A light module (pydantic only): the lead composes :class:`KaggleSettings` into the root settings
as ``[kaggle]`` / ``NBHELP_KAGGLE__<KEY>``. The backend is off unless the operator both gives an
API token and sets ``accept_risk`` (see ``docs/kaggle.md``: their Kaggle account runs strangers'
code and Kaggle's terms apply to everything it runs).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

DEFAULT_BASE_URL = "https://api.kaggle.com"
RISK_DOC = "docs/kaggle.md"


class KaggleSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # -- access ------------------------------------------------------------------------------
    accept_risk: bool = Field(
        default=False,
        description="opt-in: I accept that /run --gpu runs strangers' code on my Kaggle account "
        f"and that Kaggle's terms apply to it ({RISK_DOC})",
    )
    base_url: str = Field(
        default=DEFAULT_BASE_URL,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="Kaggle API base URL; requests go to <base_url>/v1/<Service>/<Method>",
    )
    token: SecretStr | None = Field(
        default=None,
        description="Kaggle API token (KGAT_…, from kaggle.com/settings), sent as Bearer",
    )
    token_file: Path | None = Field(
        default=None, description="file holding the API token instead (e.g. ~/.kaggle/access_token)"
    )
    username: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,49}$",
        description="the token's Kaggle username (owner of the kernels); asked from the API "
        "(IntrospectToken) when unset",
    )

    # -- what a run gets ---------------------------------------------------------------------
    accelerator: str = Field(
        default="NvidiaTeslaT4",
        pattern=r"^[A-Za-z][A-Za-z0-9]{1,40}$",
        description="Kaggle machineShape (NvidiaTeslaT4; the P100 is retired)",
    )
    wall_s: float = Field(
        default=600.0, ge=1, le=9 * 3600, description="longest a user's code may run on the GPU"
    )
    startup_grace_s: float = Field(
        default=120.0,
        ge=0,
        le=3600,
        description="added to wall_s for the session timeout sent to Kaggle and for our own "
        "deadline after the run was seen running (container start, output upload)",
    )
    queue_timeout_s: float = Field(
        default=1800.0, ge=1, description="give up when Kaggle has not started the run by then"
    )
    min_run_s: float = Field(
        default=60.0,
        ge=1,
        description="refuse a run when less GPU time than this is left in a budget",
    )
    max_code_chars: int = Field(
        default=100_000, ge=100, le=1_000_000, description="longest code accepted for a --gpu run"
    )

    # -- fairness and budgets ----------------------------------------------------------------
    max_concurrent: int = Field(
        default=2,
        ge=1,
        le=8,
        description="runs on Kaggle at once (Kaggle caps GPU sessions per account)",
    )
    max_queue: int = Field(
        default=20, ge=0, description="runs waiting in the bot's own queue at most"
    )
    user_daily_gpu_minutes: float = Field(
        default=30.0, ge=0, description="GPU minutes one chat user may use per UTC day"
    )
    weekly_gpu_hours: float = Field(
        default=25.0,
        ge=0,
        description="GPU hours this deployment may use in any 7 days (Kaggle gives an account "
        "30 h a week; keep some for the account's owner)",
    )
    check_account_quota: bool = Field(
        default=True,
        description="read the account's GPU quota (GetAcceleratorQuotaStatistics) first",
    )
    quota_cache_s: float = Field(
        default=300.0, ge=0, le=86400, description="how long the account's quota answer is reused"
    )

    # -- polling and retries -----------------------------------------------------------------
    poll_initial_s: float = Field(default=5.0, gt=0, description="first status poll after the push")
    poll_max_s: float = Field(default=30.0, gt=0, description="longest gap between status polls")
    poll_jitter_s: float = Field(default=2.0, ge=0, description="random extra wait on each poll")
    progress_every_s: float = Field(
        default=30.0, gt=0, description="at most one progress line per this many seconds"
    )
    stale_status_grace_s: float = Field(
        default=120.0,
        ge=0,
        description="a finished status before the run was seen queued/running is ignored for "
        "this long after the push (it may belong to nothing we started)",
    )
    request_timeout_s: float = Field(
        default=30.0, gt=0, le=600, description="timeout of one request to Kaggle"
    )
    retries: int = Field(default=5, ge=0, le=20, description="extra attempts on throttling and 5xx")
    retry_initial_s: float = Field(
        default=2.0, ge=0, le=600, description="first wait before retrying a throttled request"
    )
    retry_max_s: float = Field(
        default=60.0, gt=0, description="cap on one wait, Retry-After included"
    )
    push_attempts: int = Field(
        default=4, ge=1, le=10, description="pushes of one run whose fate is unknown"
    )
    reconcile_checks: int = Field(
        default=3, ge=1, le=10, description="looks for the slug after a push that answered 5xx"
    )
    reconcile_delay_s: float = Field(
        default=5.0, ge=0, le=600, description="wait between checks of an unclear push"
    )
    capacity_wait_s: float = Field(
        default=60.0, gt=0, description="wait before pushing again after Kaggle's session-count cap"
    )

    # -- clean-up ----------------------------------------------------------------------------
    slug_prefix: str = Field(
        default="nbhelp-run",
        pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$",
        max_length=30,
        description="start of every kernel slug the bot pushes (and may delete)",
    )
    orphan_after_s: float = Field(
        default=300.0,
        gt=0,
        description="a kernel whose run stopped reporting this long ago is deleted",
    )
    reap_interval_s: float = Field(
        default=120.0, gt=0, le=86400, description="how often left-behind kernels are looked for"
    )

    # -- caps on what comes back -------------------------------------------------------------
    max_response_bytes: int = Field(
        default=8_000_000, ge=10_000, description="largest API answer read (the log comes inline)"
    )
    output_bytes: int = Field(
        default=200_000, ge=1000, description="text shown per run (log + value)"
    )
    max_images: int = Field(default=4, ge=0, le=20, description="images returned per run")
    max_image_bytes: int = Field(
        default=2_000_000, ge=1000, le=50_000_000, description="largest image returned"
    )
    max_result_bytes: int = Field(
        default=256_000, ge=1000, le=50_000_000, description="largest result file read"
    )
    max_output_pages: int = Field(
        default=5, ge=1, le=50, description="pages of the output listing read"
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.token is not None and self.token_file is not None:
            raise ValueError("set either token or token_file, not both")
        if self.poll_initial_s > self.poll_max_s:
            raise ValueError("poll_initial_s must be <= poll_max_s")
        if self.orphan_after_s < 3 * (self.poll_max_s + self.poll_jitter_s):
            raise ValueError("orphan_after_s must be at least 3 poll intervals (poll_max_s)")
        return self

    # -- derived -----------------------------------------------------------------------------
    @property
    def configured(self) -> bool:
        return self.token is not None or self.token_file is not None

    @property
    def enabled(self) -> bool:
        return self.accept_risk and self.configured

    @property
    def disabled_reason(self) -> str | None:
        if not self.configured:
            return "no Kaggle API token is configured"
        if not self.accept_risk:
            return f"the operator has not set accept_risk (see {RISK_DOC})"
        return None

    def session_timeout_s(self, run_s: float) -> int:
        """``sessionTimeoutSeconds`` for a run allowed ``run_s`` seconds of code."""
        return math.ceil(run_s + self.startup_grace_s)

    def read_token(self) -> str | None:
        """The token's value (from the setting or the file), stripped; None when unset/empty."""
        if self.token is not None:
            value = self.token.get_secret_value().strip()
        elif self.token_file is not None:
            value = self.token_file.expanduser().read_text(encoding="utf-8").strip()
        else:
            return None
        return value or None

    def secret_values(self) -> list[str]:
        """Every secret's value, for the log redaction filter (an unreadable file gives none)."""
        try:
            token = self.read_token()
        except OSError:
            return []
        return [token] if token else []
