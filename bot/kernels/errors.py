"""Errors of the kernel service. Each carries ``user_message``: a short sentence fit for chat."""

from __future__ import annotations


class KernelError(Exception):
    """Base class. ``str(err)`` is the detail for logs; ``user_message`` is what the user sees."""

    default_message = "The code runner is not available right now."

    def __init__(self, user_message: str | None = None, *, detail: str | None = None) -> None:
        self.user_message = user_message or self.default_message
        super().__init__(detail or self.user_message)


class SandboxUnavailable(KernelError):
    """bubblewrap is missing or cannot create namespaces; ``/run`` is disabled."""

    default_message = "/run is disabled on this bot: its code sandbox is not available."


class Busy(KernelError):
    """The user already has a job queued or running."""

    default_message = "You already have code running. Wait for it to finish, then try again."


class RateLimited(KernelError):
    def __init__(self, retry_after_s: float, per_minute: int) -> None:
        self.retry_after_s = retry_after_s
        wait = max(1, round(retry_after_s))
        super().__init__(
            f"Slow down: at most {per_minute} runs per minute. Try again in {wait} s.",
            detail=f"rate limited for {retry_after_s:.1f} s",
        )


class NoGpuBackend(KernelError):
    default_message = "No GPU backend is configured on this bot, so --gpu is not available."


class KernelStartError(KernelError):
    """A kernel could not be started (the machine is overloaded or misconfigured)."""

    default_message = "Could not start a Python kernel right now. Please try again in a minute."


class ServiceClosed(KernelError):
    default_message = "The code runner is shutting down. Please try again later."


# -- Kaggle GPU backend (bot.kernels.kaggle) ----------------------------------------------------
class KaggleDisabled(KernelError):
    """The Kaggle backend is not configured or the operator has not accepted its risk."""

    default_message = "The Kaggle GPU backend is not enabled on this bot."


class KaggleUnavailable(KernelError):
    """Kaggle's API cannot be used right now (down, throttling us, or the token was refused)."""

    default_message = (
        "Kaggle's API is not answering properly right now, so --gpu runs cannot start. "
        "Please try again later."
    )


class KaggleRejected(KernelError):
    """Kaggle refused the run (its answer is shown, cleaned and shortened)."""

    default_message = "Kaggle refused to start the run."


class GpuBudgetExceeded(KernelError):
    """A GPU-time budget (the user's daily one, the bot's weekly one, the account's quota)."""

    default_message = "The GPU time budget is used up for now."


class GpuQueueFull(KernelError):
    default_message = "Too many --gpu runs are waiting already. Please try again in a few minutes."
