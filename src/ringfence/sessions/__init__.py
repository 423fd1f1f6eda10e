"""Sessions: the lifecycle that wires policy, store, sandbox, egress proxy and gateway together (issue 7).

So far: the deterministic built-in agent (`builtin_agent.py`), which a session runs inside its sandbox when no
model is configured."""
