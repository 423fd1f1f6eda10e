"""The ASGI application: the REST API (OpenAPI at /openapi.json) over an open store, and the periodic sweeper.

The clock is injected (tests pass a fixed one); the store is opened by the caller and handed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from datetime import UTC, datetime

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from ringfence import __version__
from ringfence.api import errors
from ringfence.api.environments_routes import router as environments_router
from ringfence.api.frontdoor import FrontDoor
from ringfence.api.github_app_routes import router as github_app_router
from ringfence.api.providers_routes import router as providers_router
from ringfence.api.routes import router
from ringfence.api.sessions_routes import router as sessions_router
from ringfence.egress.rules import MODES
from ringfence.net.addresses import AddressPolicy
from ringfence.net.dial import Dialer
from ringfence.net.resolve import CachingResolver, StaticResolver
from ringfence.sandbox.spec import Limits
from ringfence.sessions.manager import SessionManager
from ringfence.store.db import Store
from ringfence.store.sweeper import sweep

log = logging.getLogger("ringfence.api")


def utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    store: Store,
    *,
    clock: Callable[[], datetime] = utc_now,
    sweep_interval: float | None = None,
    sessions: Callable[[], Awaitable[SessionManager]] | None = None,
    ceiling: Limits | None = None,
    dialer: Dialer | None = None,
    network_modes: Collection[str] = MODES,
) -> FastAPI:
    """`sessions` builds the session manager inside the server's event loop (its proxies and sandboxes live
    there); without it, the session routes answer 503. `ceiling`: the operator's sandbox limits, which no
    environment may exceed (default: the packaged defaults). `dialer`: what the server may dial on a user's behalf,
    used to refuse a repository URL when it is connected (default: public addresses only, no name resolved)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_sweeper(store, clock, sweep_interval)) if sweep_interval else None
        manager = await sessions() if sessions is not None else None
        app.state.sessions = manager
        yield
        if manager is not None:
            await manager.shutdown()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(
        title="ringfence",
        version=__version__,
        description="Run AI coding-agent sessions in isolated sandboxes, with the data-usage policy enforced.",
        lifespan=lifespan,
        docs_url=None,  # served below from the package's own copy of Swagger UI
        redoc_url=None,
    )
    app.state.store = store
    app.state.clock = clock
    app.state.ceiling = ceiling or Limits()
    app.state.network_modes = frozenset(network_modes)
    app.state.dialer = dialer or Dialer(AddressPolicy(), CachingResolver(StaticResolver({})))
    errors.install(app)
    app.add_middleware(FrontDoor, store=store)
    app.include_router(router)
    app.include_router(sessions_router)
    app.include_router(environments_router)
    app.include_router(providers_router)
    app.include_router(github_app_router)
    app.state.console = False  # set by whoever mounts the web console on this app (ringfence.server)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/" if app.state.console else "/docs")

    app.mount("/docs-assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="ringfence API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "policy": store.rules.stamp}

    return app


async def _sweeper(store: Store, clock: Callable[[], datetime], interval: float) -> None:
    while True:
        try:
            report = await asyncio.to_thread(sweep, store, clock())
            if report.sessions or report.feedback or report.undecidable:
                log.info(
                    "sweep: %d sessions and %d feedback purged; %d without a computable deadline",
                    len(report.sessions),
                    len(report.feedback),
                    len(report.undecidable),
                )
        except Exception:
            log.exception("sweep failed; retrying at the next interval")
        await asyncio.sleep(interval)
