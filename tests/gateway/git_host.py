"""The tests' git host is the product's local git host (ringfence.githost), requiring a token."""

from ringfence.githost import BACKEND, GitHost, Seen, git, make_repository

__all__ = ["BACKEND", "GitHost", "Seen", "git", "make_repository"]
