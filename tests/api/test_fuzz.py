"""A fuzz of every operation of the live API (bounded: a fixed number of examples per operation): path
parameters, query strings and bodies from hypothesis (nested, odd, huge, not JSON at all), sent with a server
admin's token to a server on loopback. No answer is a 500, and every refusal has the documented error shape.
The operations come from the server's own OpenAPI document, so a new route is fuzzed without a change here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringfence.server import create_app
from ringfence.store import accounts, content
from ringfence.store.db import Store
from tests.conftest import T0
from tests.servers import serving

_SCALARS = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=40)
)  # fmt: skip
JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                    max_size=5), max_leaves=30)  # fmt: skip
SEGMENT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/?#"), min_size=1, max_size=30)


# Read from the app's own OpenAPI document (building it touches no store).
OPERATIONS = [
    (method.upper(), path)
    for path, ops in create_app(None, clock=lambda: T0).openapi()["paths"].items()  # type: ignore[arg-type]
    for method in ops
    if path.startswith("/v1/") and not path.endswith("/prompts")  # prompts need a running sandbox: 503 here
]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, list[tuple[str, str]], dict[str, str]]]:
    from ringfence.policy import load_rules
    from ringfence.store.db import open_store

    data = tmp_path_factory.mktemp("fuzz")
    store: Store = open_store(f"sqlite:///{data / 'db.sqlite'}", data / "master.key", rules=load_rules())
    admin = accounts.create_user(store, "root", T0, actor="t", plan="pro", server_admin=True)
    token = accounts.create_api_key(store, admin.id, "t", T0, actor="t")[1].reveal()
    session = content.start_session(store, admin.id, T0, repository_id=None)
    known = {"user_id": admin.id, "session_id": session.id, "org_id": "org_none", "name": "default"}
    with serving(create_app(store, clock=lambda: T0)) as base:
        yield base, token, OPERATIONS, known
    store.engine.dispose()


@pytest.mark.parametrize("operation", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_operation_answers_500(
    live: tuple[str, str, list[tuple[str, str]], dict[str, str]], operation: tuple[str, str], data: Any
) -> None:
    base, token, _, known = live
    method, template = operation
    path = template
    for name in [part[1:-1] for part in template.split("/") if part.startswith("{")]:
        value = data.draw(st.sampled_from([known.get(name, "x")]) | SEGMENT)
        path = path.replace("{" + name + "}", quote(value, safe=""))
    kind = data.draw(st.sampled_from(["deep", "json", "raw", "none"]))
    headers = {"Authorization": f"Bearer {token}"}
    body: bytes | None = None
    if method in ("POST", "PUT", "DELETE") and kind == "json":
        body = json.dumps(data.draw(JSON)).encode()
        headers["Content-Type"] = "application/json"
    elif method in ("POST", "PUT") and kind == "deep":
        depth = data.draw(st.sampled_from([65, 1_500, 5_000, 100_000]))
        body = json.dumps({"name": "x", "accounts": "@"}).replace('"@"', "[" * depth + "]" * depth).encode()
        headers["Content-Type"] = "application/json"
    elif method in ("POST", "PUT") and kind == "raw":
        body = data.draw(st.binary(max_size=200))
        headers["Content-Type"] = data.draw(
            st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"])
        )
    query = data.draw(st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=3))
    answer = httpx.request(method, base + path, content=body, headers=headers, params=query, timeout=30)
    assert answer.status_code < 500 or answer.status_code == 503, (method, path, body, answer.text[:300])
    if answer.status_code >= 400:
        assert set(answer.json()["error"]) == {"code", "message"}, answer.text[:300]
