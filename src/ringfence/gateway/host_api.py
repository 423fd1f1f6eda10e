"""The host API guard: which calls to the repository host's REST and GraphQL APIs a session may make.

Owns: `judge_api_call`, a pure decision over (method, path, body) for `/api/<host API path>`: an allowlist of what
a session needs (read its repository and pull requests; open a pull request from its own branch; edit the title
and body of one; comment on one; GraphQL queries), and nothing that writes refs, contents or merges
(SECURITY-CASES G9). Anything not listed is refused: default deny. GraphQL documents are parsed with
graphql-core, so a mutation cannot hide behind aliases, fragments, comments or several operations.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse

from ringfence.gateway.routes import Repository


@dataclass(frozen=True, slots=True)
class ApiDecision:
    allowed: bool
    operation: str  # a name for the audit: "pulls.create", "graphql.query", ...
    reason: str


_NUMBER = r"[1-9][0-9]{0,9}"


def _deny(operation: str, reason: str) -> ApiDecision:
    return ApiDecision(False, operation, reason)


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def judge_api_call(method: str, path: str, body: bytes, repository: Repository, branch: str) -> ApiDecision:
    """`path` is the API path after `/api` (e.g. `/repos/acme/widgets/pulls`), query included."""
    if any(c in path for c in "%\\#") or "/./" in path or "/../" in path or "//" in path:
        return _deny("invalid", "API path holds escapes or dot segments")
    route = path.partition("?")[0]
    repo = re.escape(f"/repos/{repository.owner}/{repository.name}")
    if route == "/graphql":
        return _graphql(method, body)
    if not re.match(rf"^{repo}(/|$)", route):
        return _deny("other-repository", f"only {repository} is reachable through the API")
    rest = route[len(f"/repos/{repository.owner}/{repository.name}") :]
    if method == "GET":
        if rest == "" or re.fullmatch(rf"/pulls(/{_NUMBER}(/(commits|files|reviews|comments))?)?", rest):
            return ApiDecision(True, "read", "reading the repository or its pull requests")
        if re.fullmatch(rf"/issues/{_NUMBER}/comments", rest):
            return ApiDecision(True, "read", "reading pull request comments")
        return _deny("read-other", f"GET {rest or '/'} is not on the allowlist")
    if method == "POST" and rest == "/pulls":
        fields = _json(body)
        if fields is None:
            return _deny("pulls.create", "the pull request body is not a JSON object")
        head = str(fields.get("head", ""))
        if head not in (branch, f"{repository.owner}:{branch}"):
            return _deny("pulls.create", f"a pull request may only be opened from {branch}, not {head[:100]!r}")
        if set(fields) - {"title", "body", "head", "base", "draft", "maintainer_can_modify"}:
            return _deny("pulls.create", "unexpected fields in the pull request")
        return ApiDecision(True, "pulls.create", f"a pull request from {branch}")
    if method == "PATCH" and re.fullmatch(rf"/pulls/{_NUMBER}", rest):
        fields = _json(body)
        if fields is None or not fields or set(fields) - {"title", "body"}:
            return _deny("pulls.update", "only the title and body of a pull request may be changed")
        return ApiDecision(True, "pulls.update", "editing a pull request's title or body")
    if method == "POST" and re.fullmatch(rf"/issues/{_NUMBER}/comments", rest):
        return ApiDecision(True, "comments.create", "commenting on a pull request")
    return _deny("write-other", f"{method} {rest or '/'} writes what a session may not (refs, contents, merges...)")


def _graphql(method: str, body: bytes) -> ApiDecision:
    if method != "POST":
        return _deny("graphql", "GraphQL takes POST")
    fields = _json(body)
    document = fields.get("query") if fields else None
    if not isinstance(document, str):
        return _deny("graphql", "the GraphQL request has no query")
    try:
        parsed = parse(document)
    except GraphQLError as exc:
        return _deny("graphql", f"the GraphQL document does not parse: {exc.message[:100]}")
    operations = [d for d in parsed.definitions if isinstance(d, OperationDefinitionNode)]
    if not operations:
        return _deny("graphql", "the GraphQL document has no operation")
    for operation in operations:
        if operation.operation is not OperationType.QUERY:
            return _deny("graphql.mutation", f"GraphQL {operation.operation.value}s are refused (reads only)")
    return ApiDecision(True, "graphql.query", "a GraphQL read")
