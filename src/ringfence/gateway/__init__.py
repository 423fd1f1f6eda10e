"""The credential gateway: repository and model-API access whose secrets never enter the sandbox.

So far: the git protocol rules (pkt-lines, the push head, the session's push rule, repository routes), pure."""
