"""The consoles every command prints to, and the decorator that turns known refusals into `error: ...` and
exit code 2. Light on purpose: the proxies' commands import it without the rest of the CLI."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from rich.console import Console

# soft_wrap: printed commands and tokens must stay on one line to be copied, whatever the terminal width.
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

P = ParamSpec("P")
R = TypeVar("R")


def exits_on(*kinds: type[BaseException]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Errors of these kinds print `error: <message>` (which names what was wrong) and exit 2."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return func(*args, **kwargs)
            except kinds as exc:
                err.print(f"[bold red]error:[/] {exc}", markup=True, soft_wrap=True)
                sys.exit(2)

        return wrapper

    return decorate
