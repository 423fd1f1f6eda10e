"""The store's exceptions: a short, flat list that the API maps to status codes and the CLI to exit codes."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every refusal by the store; the message names what was wrong."""


class NotFound(StoreError):
    """The named thing does not exist (or is not visible to the caller)."""


class Conflict(StoreError):
    """The request contradicts what is stored (duplicate, already deleted...)."""


class Invalid(StoreError):
    """The input is malformed."""


class ContentRefused(StoreError):
    """The store will not keep this content: zero data retention, a deleted or expired session, no decision."""
