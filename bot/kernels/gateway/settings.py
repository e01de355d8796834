"""Settings of one Jupyter Kernel Gateway / Enterprise Gateway backend (light: pydantic only).

The root settings compose one of these per configured gateway; the backend is then
``KernelService(gw.kernel_limits(limits), backend=GatewayBackend(gw, gw.kernel_limits(limits)))``.
E.g. in TOML::

    [gateways.gpu]
    base_url = "https://eg.example.org"
    token = "…"                      # or NBHELP_GATEWAYS__GPU__TOKEN
    user_id_secret = "…"             # HMAC key for KERNEL_USERNAME
    kernelspec = "python-gpu-small"
    gpu = true
    gpu_description = "NVIDIA T4 (16 GB)"
    max_kernels = 8
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from bot.kernels.settings import KernelLimits


class GatewaySettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        default="gateway",
        min_length=1,
        max_length=40,
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="short name of this backend, shown in /run --info and in messages",
    )
    base_url: str = Field(
        ...,
        description="the gateway's base URL, e.g. http://127.0.0.1:8888 (ws:// is derived)",
    )
    token: SecretStr | None = Field(
        default=None, description="sent as `Authorization: token <T>` (Kernel Gateway's auth_token)"
    )
    user_id_secret: SecretStr | None = Field(
        default=None,
        description="per-deployment HMAC key turning a chat user into KERNEL_USERNAME; "
        "default: the token (rotating the token then changes every user's id)",
    )
    kernelspec: str = Field(
        default="nbhelp-python",
        min_length=1,
        max_length=100,
        description="kernelspec name on the gateway; its size (CPU, memory, GPU) is the "
        "operator's, never the user's",
    )
    warm_pool_size: int = Field(
        default=1,
        ge=0,
        le=64,
        description="spare kernels started ahead of time; spares run under an anonymous "
        "KERNEL_USERNAME (nbhelp-spare-…), so 0 makes every kernel carry its user's id",
    )
    max_kernels: int = Field(
        default=8,
        ge=1,
        le=10_000,
        description="kernels this bot keeps on the gateway at most (sessions + spares); "
        "set it at or below the gateway's own cap so users queue in the bot",
    )
    gpu: bool = Field(
        default=False, description="kernels of this kernelspec have a GPU (/run --gpu)"
    )
    gpu_description: str | None = Field(
        default=None, max_length=80, description="e.g. 'NVIDIA T4 (16 GB)', shown in /run --info"
    )
    sandboxed: bool = Field(
        default=False,
        description="the operator vouches that the kernelspec isolates users (e.g. the "
        "bubblewrap kernelspec of bot.kernels.kernelspec or one pod per kernel)",
    )
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120, description="TCP connect budget")
    request_timeout_s: float = Field(
        default=15.0, gt=0, le=600, description="one REST call (interrupt, delete, kernelspecs)"
    )
    start_timeout_s: float = Field(
        default=120.0,
        gt=0,
        le=1800,
        description="POST /api/kernels until the kernel answers (a Kubernetes pod may need "
        "an image pull: minutes)",
    )
    full_retry_s: float = Field(
        default=20.0,
        ge=0,
        le=600,
        description="how long a start retries while the gateway answers 'Resource Limit' "
        "before the user is told it is full",
    )
    reconnect_timeout_s: float = Field(
        default=5.0, gt=0, le=120, description="one WebSocket reconnect after a drop mid-run"
    )
    liveness_check_after_s: float = Field(
        default=5.0,
        ge=0,
        description="a kernel idle longer than this is looked up (GET) before a run, so a "
        "kernel the gateway culled is replaced instead of waited on",
    )
    max_body_bytes: int = Field(
        default=1_000_000, gt=0, description="largest REST answer read from the gateway"
    )
    heartbeat_s: float = Field(default=30.0, gt=0, description="WebSocket ping interval")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    def hmac_key(self) -> bytes:
        """The key of KERNEL_USERNAME's HMAC (never logged)."""
        for secret in (self.user_id_secret, self.token):
            if secret is not None and secret.get_secret_value():
                return secret.get_secret_value().encode()
        return b"nbhelp-unkeyed:" + self.base_url.encode()

    def kernel_limits(self, base: KernelLimits) -> KernelLimits:
        """``base`` (the per-run limits) sized for this gateway: its warm pool, and sessions
        capped so that sessions + spares never pass ``max_kernels``. Users beyond that wait
        in the bot's queue, with their position shown, instead of hitting the gateway's 403."""
        sessions = max(1, self.max_kernels - self.warm_pool_size)
        return KernelLimits(
            **{
                **base.model_dump(),
                "pool_size": self.warm_pool_size,
                "pool_surge": 0,  # sessions + spares stay within max_kernels
                "max_sessions": sessions
                if base.max_sessions == "auto"
                else min(base.max_sessions, sessions),
                "max_running": min(base.max_running, sessions),
            }
        )
