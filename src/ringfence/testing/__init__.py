"""Test support shipped with the package: stand-in model providers (and, later, the sandbox conformance suite)."""
