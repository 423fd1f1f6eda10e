"""Accounts: organizations, users, API keys and connected repositories, and the settings that feed the policy.

Owns: creating them, the consumer training switch and the org admin's DPP/ZDR switches (each one a ledger event,
refused by the policy with its own words where the plan cannot have it), bearer tokens stored only as SHA-256,
and the repository list a session may be started on. Every change is audited in its own transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session as OrmSession

from ringfence.audit import AuditEntry
from ringfence.policy import EventType, PolicyError, format_time
from ringfence.store import ledger
from ringfence.store.crypto import Secret
from ringfence.store.db import Store
from ringfence.store.errors import Conflict, Invalid, NotFound
from ringfence.store.ids import new_id
from ringfence.store.models import ApiKey, Organization, PolicyEvent, Repository, Session, User

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_TOKEN = re.compile(r"^rf_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


def _audit(store: Store, db: OrmSession, kind: str, subject: str, at: datetime, **data: object) -> None:
    store.audit.append(db.connection(), AuditEntry(kind, subject, format_time(at), data, store.rules.stamp))


def create_organization(store: Store, name: str, plan: str, at: datetime, *, actor: str) -> Organization:
    try:
        rule = store.rules.plan(plan)
    except KeyError as exc:
        raise Invalid(str(exc.args[0])) from None
    if rule.is_consumer:
        raise Invalid(f"plan {plan!r} is a consumer plan; an organization needs a commercial plan")
    with store.write() as db:
        org = Organization(id=new_id("org"), name=_text(name, "name"), plan=plan, dpp=False, zdr=False, created_at=at)
        db.add(org)
        db.flush()
        _audit(store, db, "org.created", org.id, at, plan=plan, actor=actor)
    return org


def create_user(
    store: Store,
    name: str,
    at: datetime,
    *,
    actor: str,
    plan: str | None = None,
    org_id: str | None = None,
    org_admin: bool = False,
    server_admin: bool = False,
) -> User:
    """A consumer (with `plan`), a member of an organization (with `org_id`), or a server admin (neither)."""
    if plan is not None and org_id is not None:
        raise Invalid("a user has either a consumer plan or an organization, not both")
    if plan is not None:
        try:
            rule = store.rules.plan(plan)
        except KeyError as exc:
            raise Invalid(str(exc.args[0])) from None
        if not rule.is_consumer:
            raise Invalid(f"plan {plan!r} is commercial: create an organization on it and add the user as a member")
    elif org_id is None and not server_admin:
        raise Invalid("a user needs a consumer plan (free, pro, max) or an organization")
    if org_admin and org_id is None:
        raise Invalid("only a member of an organization can be its admin")
    with store.write() as db:
        if org_id is not None and db.get(Organization, org_id) is None:
            raise NotFound(f"no organization {org_id!r}")
        user = User(
            id=new_id("usr"),
            name=_text(name, "name"),
            plan=plan,
            org_id=org_id,
            org_admin=org_admin,
            server_admin=server_admin,
            training=False,
            created_at=at,
        )
        db.add(user)
        db.flush()
        _audit(
            store,
            db,
            "user.created",
            user.id,
            at,
            plan=plan,
            org=org_id,
            org_admin=org_admin,
            server_admin=server_admin,
            actor=actor,
        )
    return user


def _text(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200 or any(ord(c) < 32 for c in value):
        raise Invalid(f"{what} must be 1-200 printable characters")
    return value.strip()


def set_training(store: Store, user_id: str, enabled: bool, at: datetime, *, actor: str) -> User:
    """The consumer training setting; its full history stays in the ledger."""
    with store.write() as db:
        user = db.get(User, user_id)
        if user is None:
            raise NotFound(f"no user {user_id!r}")
        if user.plan is None:
            raise PolicyError(
                "the training setting belongs to consumer accounts; this user works under an organization's "
                "commercial plan, whose training is governed by the organization's DPP switch"
            )
        ledger.record(store, db, user.id, EventType.CONSENT, at, actor=actor, value=enabled)
        user.training = enabled
    return user


def set_org_switches(
    store: Store, org_id: str, changes: Mapping[str, bool], at: datetime, *, actor: str
) -> Organization:
    """An organization's DPP and/or ZDR switches, in one transaction: all apply, or none (the policy refuses plans
    that cannot have a switch, with its own words)."""
    kinds = {"dpp": EventType.DPP, "zdr": EventType.ZDR}
    unknown = sorted(set(changes) - set(kinds))
    if unknown or not changes:
        raise Invalid(f"organization switches are dpp and zdr; got {', '.join(unknown) or 'none'}")
    with store.write() as db:
        org = db.get(Organization, org_id)
        if org is None:
            raise NotFound(f"no organization {org_id!r}")
        for switch in ("dpp", "zdr"):
            if switch in changes:
                ledger.record(store, db, org.id, kinds[switch], at, actor=actor, value=changes[switch])
                setattr(org, switch, changes[switch])
    return org


def set_org_switch(store: Store, org_id: str, switch: str, enabled: bool, at: datetime, *, actor: str) -> Organization:
    """One switch; see set_org_switches."""
    return set_org_switches(store, org_id, {switch: enabled}, at, actor=actor)


def settings_history(store: Store, account_id: str) -> list[dict[str, object]]:
    """Every consent / DPP / ZDR change of an account, oldest first."""
    with store.read() as db:
        rows = db.scalars(
            select(PolicyEvent)
            .where(PolicyEvent.account_id == account_id, PolicyEvent.type.in_(("consent", "dpp", "zdr")))
            .order_by(PolicyEvent.seq)
        )
        return [
            {
                "seq": e.seq,
                "at": format_time(e.at),
                "setting": e.type,
                "value": e.value,
                "actor": e.actor,
                "policy": e.policy,
            }
            for e in rows
        ]


def create_api_key(
    store: Store, user_id: str, name: str, at: datetime, *, actor: str, zdr: bool = False
) -> tuple[ApiKey, Secret]:
    """A new bearer token, shown once; only its SHA-256 is stored."""
    with store.write() as db:
        user = db.get(User, user_id)
        if user is None:
            raise NotFound(f"no user {user_id!r}")
        if zdr:
            plan = ledger.policy_account(db, user.account_id).plan if (user.org_id or user.plan) else None
            if plan is None or not store.rules.plan(plan).can_have_zdr:
                raise PolicyError(f"zero data retention API keys are not available on plan {plan!r}")
        prefix = secrets.token_hex(8)
        token = f"rf_{prefix}_{secrets.token_urlsafe(32)}"
        key = ApiKey(
            id=new_id("key"),
            user_id=user.id,
            name=_text(name, "name"),
            prefix=prefix,
            secret_sha256=hashlib.sha256(token.encode()).hexdigest(),
            zdr=zdr,
            created_at=at,
        )
        db.add(key)
        db.flush()
        _audit(store, db, "apikey.created", key.id, at, user=user.id, zdr=zdr, actor=actor)
    return key, Secret(token)


def authenticate(store: Store, token: str) -> tuple[User, ApiKey] | None:
    """The user and key a bearer token belongs to, or None (unknown, malformed or revoked)."""
    match = _TOKEN.match(token or "")
    if match is None:
        return None
    with store.read() as db:
        key = db.scalar(select(ApiKey).where(ApiKey.prefix == match.group(1)))
        if key is None or key.revoked_at is not None:
            return None
        if not hmac.compare_digest(key.secret_sha256, hashlib.sha256(token.encode()).hexdigest()):
            return None
        user = db.get(User, key.user_id)
        return (user, key) if user is not None else None


def list_api_keys(store: Store, user_id: str) -> list[ApiKey]:
    with store.read() as db:
        return list(db.scalars(select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.created_at)))


def revoke_api_key(store: Store, user_id: str, key_id: str, at: datetime, *, actor: str) -> ApiKey:
    with store.write() as db:
        key = db.get(ApiKey, key_id)
        if key is None or key.user_id != user_id:
            raise NotFound(f"no API key {key_id!r} for this user")
        if key.revoked_at is None:
            key.revoked_at = at
            _audit(store, db, "apikey.revoked", key.id, at, user=user_id, actor=actor)
    return key


def parse_repository_url(url: str) -> tuple[str, str, str, str]:
    """(host, owner, name, canonical url) of `https://host[:port]/owner/name[.git]`; anything else is refused."""
    if not isinstance(url, str) or len(url) > 500 or any(ord(c) < 33 for c in url):
        raise Invalid("repository url must be one line without spaces, at most 500 characters")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise Invalid(f"repository url {url!r} must be http(s)://HOST/OWNER/NAME")
    if parts.username or parts.password:
        raise Invalid("repository url must not carry credentials: ringfence injects them on the way out")
    if parts.query or parts.fragment:
        raise Invalid(f"repository url {url!r} must not have a query or fragment")
    segments = parts.path.strip("/").split("/")
    if len(segments) != 2:
        raise Invalid(f"repository url {url!r} must name exactly OWNER/NAME")
    owner, name = segments[0], segments[1].removesuffix(".git")
    for part in (owner, name):
        if not _NAME.match(part) or part.startswith(".") or ".." in part:
            raise Invalid(f"repository owner and name may hold letters, digits, '-', '_' and '.', got {part!r}")
    host = parts.hostname.lower().rstrip(".")
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return netloc, owner, name, f"{parts.scheme}://{netloc}/{owner}/{name}.git"


def connect_repository(store: Store, user_id: str, url: str, at: datetime, *, actor: str) -> Repository:
    host, owner, name, canonical = parse_repository_url(url)
    with store.write() as db:
        if db.get(User, user_id) is None:
            raise NotFound(f"no user {user_id!r}")
        existing = db.scalar(
            select(Repository).where(
                Repository.user_id == user_id,
                Repository.host == host,
                Repository.owner == owner,
                Repository.name == name,
            )
        )
        if existing is not None:
            raise Conflict(f"repository {canonical} is already connected ({existing.id})")
        repo = Repository(
            id=new_id("repo"), user_id=user_id, host=host, owner=owner, name=name, url=canonical, created_at=at
        )
        db.add(repo)
        db.flush()
        _audit(store, db, "repository.connected", repo.id, at, user=user_id, host=host, actor=actor)
    return repo


def list_repositories(store: Store, user_id: str) -> list[Repository]:
    with store.read() as db:
        return list(db.scalars(select(Repository).where(Repository.user_id == user_id).order_by(Repository.url)))


def disconnect_repository(store: Store, user_id: str, repo_id: str, at: datetime, *, actor: str) -> None:
    with store.write() as db:
        repo = db.get(Repository, repo_id)
        if repo is None or repo.user_id != user_id:
            raise NotFound(f"no repository {repo_id!r} for this user")
        if db.scalar(select(Session.id).where(Session.repository_id == repo_id).limit(1)) is not None:
            raise Conflict(f"repository {repo.url} has sessions; delete them before disconnecting it")
        db.delete(repo)
        _audit(store, db, "repository.disconnected", repo_id, at, user=user_id, actor=actor)
