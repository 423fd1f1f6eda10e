"""A logging filter that removes secrets from every record before any handler sees it (defence in depth: the
gateway never logs a credential on purpose, and this makes sure a library's debug output cannot either)."""

from __future__ import annotations

import base64
import logging

from ringfence.store.crypto import Secret


class Redactor(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._forms: set[str] = set()

    def add(self, secret: Secret) -> None:
        raw = secret.reveal()
        if len(raw) >= 6:
            self._forms |= {
                raw,
                base64.b64encode(raw.encode()).decode(),
                base64.b64encode(f"x-access-token:{raw}".encode()).decode(),
            }

    def scrub(self, text: str) -> str:
        for form in self._forms:
            text = text.replace(form, "[redacted]")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._forms:
            record.msg = self.scrub(record.getMessage())
            record.args = ()
        return True


def install(secret: Secret) -> Redactor:
    """Redact `secret` from everything logged through the root logger's handlers."""
    redactor = Redactor()
    redactor.add(secret)
    handlers: list[logging.Handler] = list(logging.getLogger().handlers)
    if not handlers and logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        handler.addFilter(redactor)
    return redactor
