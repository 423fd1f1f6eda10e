"""Sandboxes: one isolated environment per session, with no way out but what ringfence bridges in.

Owns: the backend-neutral interface (`base`), its values (`spec`), and the bubblewrap backend. Knows nothing of
policy or accounts.
"""

from ringfence.sandbox.base import Sandbox, SandboxBackend
from ringfence.sandbox.bubblewrap import BubblewrapBackend
from ringfence.sandbox.spec import Completed, Exit, Limits, Output, SandboxError, SandboxSpec

__all__ = [
    "BubblewrapBackend",
    "Completed",
    "Exit",
    "Limits",
    "Output",
    "Sandbox",
    "SandboxBackend",
    "SandboxError",
    "SandboxSpec",
]
