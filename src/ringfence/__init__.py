"""ringfence: run AI coding-agent sessions in isolated sandboxes and keep the data-usage policy provably."""

__version__ = "0.1.0"
