"""Every threshold, interval and timeout of the monitor, in one model the integrator maps from env."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

USER_AGENT = "nbhelp-monitor/0.1 (+https://github.com/nbhelp)"

DEFAULT_CONTROL_URLS = (
    "https://www.gstatic.com/generate_204",
    "https://cloudflare.com/cdn-cgi/trace",
    "https://www.msftconnecttest.com/connecttest.txt",
)


class MonitorSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # scheduling
    background: bool = Field(
        True, description="check every platform on its interval while the bot runs"
    )
    interval_s: float = Field(300.0, gt=0, description="seconds between checks of one platform")
    interval_overrides: dict[str, float] = Field(default_factory=dict)
    jitter_s: float = Field(30.0, ge=0, description="random +- spread on each interval")
    stale_after_s: float | None = Field(None, description="default: the platform's interval")
    answer_wait_s: float | None = Field(
        4.0,
        description="/status waits this long for an on-the-spot check, then answers from "
        "the store (stale, with its age) while the check goes on; None = wait for it",
    )

    # fetching
    timeout_s: float = Field(10.0, gt=0, description="wall budget of one source check, retries in")
    max_concurrency: int = Field(32, ge=1)
    retries: int = Field(2, ge=0, description="extra attempts after a fast failure")
    retry_delays_s: tuple[float, ...] = (1.0, 3.0)
    feed_cache_s: float = Field(90.0, ge=0, description="official feeds are cached this long")
    max_redirects: int = Field(5, ge=0)
    max_body_bytes: int = Field(2_000_000, gt=0)
    feed_max_body_bytes: dict[str, int] = Field(
        default_factory=lambda: {"google_cloud": 40_000_000, "google_workspace": 40_000_000},
        description="a larger cap per source kind: Google's incidents.json grows every year "
        "(0.6 MB in 2021, 1.35 MB in 2022); past the cap only its newest incidents are read",
    )
    user_agent: str = USER_AGENT
    announce_max_age_s: float = Field(
        3 * 86400.0, description="an open GitHub announcement older than this is not an incident"
    )
    announce_news_max_age_s: float = Field(
        14 * 86400.0, ge=0, description="an open announcement that is a notice stays news this long"
    )
    trust_env: bool = Field(True, description="honour HTTP(S)_PROXY / SSL_CERT_FILE from env")
    wrong_format_retry_s: float = Field(
        3600.0,
        ge=0,
        description="a feed that answers in the wrong format (HTML, another kind, 404) is "
        "asked again only after this long, doubling each time up to 24 h",
    )
    rate_limit_wait_s: float = Field(
        900.0, ge=0, description="wait after a rate limit that names no reset time"
    )

    # connectivity guard
    control_urls: tuple[str, ...] = DEFAULT_CONTROL_URLS
    control_timeout_s: float = Field(5.0, gt=0)
    control_cache_s: float = Field(60.0, ge=0)
    guard_min_platforms: int = Field(
        2, ge=1, description="without control URLs, a sweep of this many failing = offline"
    )

    # verdict hysteresis
    failure_threshold: int = Field(3, ge=1)
    success_threshold: int = Field(2, ge=1)

    # history
    raw_retention_s: float = 24 * 3600.0
    hourly_retention_days: int = 30
    daily_retention_days: int = 365
    prune_every_s: float = 3600.0

    # alerts
    reminder_s: float = Field(4 * 3600.0, gt=0, description="reminder while still down")
    flap_window_s: float = 3600.0
    flap_threshold: int = Field(4, ge=2, description="status changes in the window = flapping")
    outbox_retention_days: int = 7

    # community reports
    report_window_s: float = 1800.0
    report_dedupe_s: float = 1800.0
    report_user_max: int = Field(3, ge=1, description="reports one person may file per window")
    report_chat_cap: int = Field(3, ge=1, description="people counted from one chat at most")
    report_min_chats: int = Field(2, ge=1)
    report_floor_possible: int = Field(3, ge=1)
    report_floor_detected: int = Field(6, ge=1)
    report_factor_possible: float = Field(3.0, ge=1)
    report_factor_detected: float = Field(6.0, ge=1)
    report_baseline_weeks: int = Field(4, ge=1)
    report_retention_days: int = 35

    def body_cap(self, kind: str) -> int:
        return self.feed_max_body_bytes.get(kind, self.max_body_bytes)

    def interval_for(self, platform_id: str) -> float:
        return self.interval_overrides.get(platform_id, self.interval_s)

    def stale_after(self, platform_id: str) -> float:
        return (
            self.stale_after_s if self.stale_after_s is not None else self.interval_for(platform_id)
        )
