"""The errors genctl raises for things a user can fix.

Every message is one line: the subject, what was received, what was expected, and where useful the
fix — ``Input 'label' | got dtype float32 | expected int64``. The CLI prints ``error: <message>``
and exits 1 without a traceback; anything that is *not* a GenctlError is a bug and keeps its
traceback.
"""
from __future__ import annotations


class GenctlError(Exception):
    """A user-facing error: ``subject | got ... | expected ... [| fix: ...]``."""

    def __init__(self, subject: str, *, got: object = None, expected: object = None, fix: str | None = None):
        parts = [subject]
        if got is not None:
            parts.append(f"got {got}")
        if expected is not None:
            parts.append(f"expected {expected}")
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__(" | ".join(parts))
        self.subject, self.got, self.expected, self.fix = subject, got, expected, fix


class ConditionError(GenctlError):
    """A condition or sampling control that does not fit the model's schema."""


class BundleError(GenctlError):
    """A bundle or checkpoint that is missing, corrupted, tampered with or from a newer genctl."""


class BackendUnavailable(GenctlError):
    """A backend (or precision) that cannot run on this machine: package or device missing."""


class ParityError(GenctlError):
    """An exported or optimised graph that does not match the PyTorch reference."""
