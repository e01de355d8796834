"""Errors a handler raises on purpose, and the error id given to everything else."""

from __future__ import annotations

import secrets


class UserError(Exception):
    """An expected failure: the message is shown to the user as it is (short, helpful)."""

    def __init__(self, message: str, *, suggestions: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.suggestions = suggestions


def new_error_id() -> str:
    """A short id a user can quote and an operator can grep in the log."""
    return secrets.token_hex(4)
