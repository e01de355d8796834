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
    interval_s: float = Field(
        300.0, gt=0, le=86400, description="seconds between checks of one platform"
    )
    interval_overrides: dict[str, float] = Field(
        default_factory=dict, description="per-platform intervals, e.g. {colab = 120}"
    )
    jitter_s: float = Field(30.0, ge=0, le=3600, description="random +- spread on each interval")
    stale_after_s: float | None = Field(
        None,
        gt=0,
        le=7 * 86400,
        description="a verdict older than this is re-checked on "
        "/status (default: the platform's interval)",
    )
    answer_wait_s: float | None = Field(
        4.0,
        ge=0,
        le=120,
        description="/status waits this long for an on-the-spot check, then answers from "
        "the store (stale, with its age) while the check goes on; None = wait for it",
    )

    # fetching
    timeout_s: float = Field(
        10.0, gt=0, le=300, description="wall budget of one source check, retries in"
    )
    max_concurrency: int = Field(32, ge=1, le=1024, description="checks in flight at once")
    retries: int = Field(2, ge=0, le=10, description="extra attempts after a fast failure")
    retry_delays_s: tuple[float, ...] = Field(
        (1.0, 3.0), description="waits before those extra attempts"
    )
    feed_cache_s: float = Field(
        90.0, ge=0, le=3600, description="official feeds are cached this long"
    )
    max_redirects: int = Field(5, ge=0, le=20, description="redirects followed per request")
    max_body_bytes: int = Field(
        2_000_000, gt=0, le=100_000_000, description="largest response body read"
    )
    feed_max_body_bytes: dict[str, int] = Field(
        default_factory=lambda: {"google_cloud": 40_000_000, "google_workspace": 40_000_000},
        description="a larger cap per source kind: Google's incidents.json grows every year "
        "(0.6 MB in 2021, 1.35 MB in 2022); past the cap only its newest incidents are read",
    )
    user_agent: str = Field(USER_AGENT, min_length=1, max_length=200, description="User-Agent sent")
    announce_max_age_s: float = Field(
        3 * 86400.0,
        ge=0,
        le=365 * 86400,
        description="an open GitHub announcement older than this is not an incident",
    )
    announce_news_max_age_s: float = Field(
        14 * 86400.0,
        ge=0,
        le=365 * 86400,
        description="an open announcement that is a notice stays news this long",
    )
    trust_env: bool = Field(True, description="honour HTTP(S)_PROXY / SSL_CERT_FILE from env")
    wrong_format_retry_s: float = Field(
        3600.0,
        ge=0,
        le=7 * 86400,
        description="a feed that answers in the wrong format (HTML, another kind, 404) is "
        "asked again only after this long, doubling each time up to 24 h",
    )
    rate_limit_wait_s: float = Field(
        900.0, ge=0, le=86400, description="wait after a rate limit that names no reset time"
    )

    # connectivity guard
    control_urls: tuple[str, ...] = Field(
        DEFAULT_CONTROL_URLS,
        description="asked when probes fail: if none answers, this bot is offline (verdicts "
        "unknown, no alerts)",
    )
    control_timeout_s: float = Field(5.0, gt=0, le=60, description="timeout of a control URL")
    control_cache_s: float = Field(
        60.0, ge=0, le=3600, description="how long a control check's answer is reused"
    )
    guard_min_platforms: int = Field(
        2, ge=1, le=100, description="without control URLs, a sweep of this many failing = offline"
    )

    # verdict hysteresis
    failure_threshold: int = Field(3, ge=1, le=20, description="failed checks before down")
    success_threshold: int = Field(2, ge=1, le=20, description="good checks before recovered")

    # history
    raw_retention_s: float = Field(
        24 * 3600.0, gt=0, le=30 * 86400, description="raw checks kept this long"
    )
    hourly_retention_days: int = Field(30, ge=1, le=365, description="hourly buckets kept")
    daily_retention_days: int = Field(365, gt=0, le=3650, description="daily buckets kept")
    prune_every_s: float = Field(3600.0, gt=0, le=86400, description="how often old rows go")

    # alerts
    reminder_s: float = Field(
        4 * 3600.0, gt=0, le=7 * 86400, description="reminder while still down"
    )
    flap_window_s: float = Field(
        3600.0, gt=0, le=86400, description="window in which status changes are counted"
    )
    flap_threshold: int = Field(
        4, ge=2, le=100, description="status changes in the window = flapping"
    )
    outbox_retention_days: int = Field(
        7, ge=1, le=365, description="sent and failed alerts kept this long"
    )

    # community reports
    report_window_s: float = Field(
        1800.0, gt=0, le=86400, description="reports counted over this window"
    )
    report_dedupe_s: float = Field(
        1800.0, ge=0, le=86400, description="one report per person per platform this long"
    )
    report_user_max: int = Field(
        3, ge=1, le=100, description="reports one person may file per window"
    )
    report_chat_cap: int = Field(
        3, ge=1, le=1000, description="people counted from one chat at most"
    )
    report_min_chats: int = Field(
        2, ge=1, le=100, description="chats needed before reports mean possible problems"
    )
    report_floor_possible: int = Field(
        3, ge=1, le=10000, description="people needed for 'possible problems', at least"
    )
    report_floor_detected: int = Field(
        6, ge=1, le=10000, description="people needed for 'problems detected', at least"
    )
    report_factor_possible: float = Field(
        3.0, ge=1, le=100, description="times the usual count for 'possible problems'"
    )
    report_factor_detected: float = Field(
        6.0, ge=1, le=100, description="times the usual count for 'problems detected'"
    )
    report_baseline_weeks: int = Field(
        4, ge=1, le=52, description="weeks of history behind 'the usual count'"
    )
    report_retention_days: int = Field(35, gt=0, le=3650, description="reports kept this long")

    def body_cap(self, kind: str) -> int:
        return self.feed_max_body_bytes.get(kind, self.max_body_bytes)

    def interval_for(self, platform_id: str) -> float:
        return self.interval_overrides.get(platform_id, self.interval_s)

    def stale_after(self, platform_id: str) -> float:
        return (
            self.stale_after_s if self.stale_after_s is not None else self.interval_for(platform_id)
        )
