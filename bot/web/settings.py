"""The web side's settings: one frozen model the lead composes into the root settings.

Light on purpose (pydantic only): the CLI reads it before deciding whether to import aiohttp.
"""

from __future__ import annotations

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field


class WebSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool | None = Field(
        None,
        description="serve the status page, API, health and metrics; None = automatic: on when "
        "a chat adapter runs or when started as `web`, off in the console",
    )
    host: str = Field(
        "0.0.0.0",
        min_length=1,
        max_length=255,
        description="listen address; everything served is public, but put a TLS proxy in front",
    )
    port: int = Field(
        8080, ge=0, le=65535, description="listen port ($PORT on Heroku-like hosts); 0 = any free"
    )
    public_url: AnyHttpUrl | None = Field(
        None,
        description="the page's public base URL (https://status.example.org/), for the feed's "
        "and the API's absolute links; default: taken from each request's Host header",
    )
    title: str = Field(
        "Notebook platforms status", min_length=1, max_length=80, description="the page's title"
    )
    cache_s: float = Field(
        5.0,
        ge=0,
        le=300,
        description="how long a read of the store and a rendered page are reused; concurrent "
        "requests share one read either way",
    )
    history_days: int = Field(90, ge=7, le=365, description="days in the uptime bar")
    incidents_limit: int = Field(
        50, ge=1, le=500, description="past incidents listed on the page and in the API"
    )
    metrics_enabled: bool = Field(True, description="serve /metrics")
    ready_sweep_max_age_s: float = Field(
        900.0,
        gt=0,
        description="/readyz fails when the monitor's newest check is older than this",
    )
    shutdown_timeout_s: float = Field(
        5.0, gt=0, le=30, description="time in-flight requests get when the server stops"
    )
