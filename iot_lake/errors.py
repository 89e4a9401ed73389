"""Errors that reach a person: each names the field and the form it expected."""

from __future__ import annotations


class InvalidInput(ValueError):
    """A value refused at the boundary (CLI flag, env var, spec file), with what was expected."""

    def __init__(self, field: str, expected: str, got: object) -> None:
        self.field = field
        self.expected = expected
        self.got = got
        super().__init__(f"{field}: expected {expected}, got {got!r}")


class CheckpointError(RuntimeError):
    """The lake's committed source position and the source disagree: never papered over."""
