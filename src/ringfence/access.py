"""Who may act on what: every authorization rule of ringfence, decided here and only here.

Owns: the rules over accounts (a user, an organization admin, a server admin) and the things they act on (users,
tokens, organizations, environments, sessions). The REST API and the web console both call these functions; neither
carries a copy of a rule (ARCHITECTURE.md; SECURITY-CASES T2). Knows nothing of HTTP or pages: a refusal is
`Forbidden` (the caller is known and may not do this) or `NotFound` (the caller may not even learn that it exists),
and each front end turns them into its own answer.

The rules, in short:
- A user acts on their own settings, tokens, repositories, environments (consumers) and sessions.
- An organization admin manages the organization (its switches, members, environments) and sees members' metadata:
  who they are, their tokens' names, their sessions' ids, times and retention. Never a member's content, and never a
  credential that acts as the member: an admin cannot mint a member's token (revoking one is allowed: it grants
  nothing, and is how a member is offboarded).
- A server admin (the operator) creates organizations and users, issues a user's first token and verifies the audit
  log.
"""

from __future__ import annotations

from ringfence.store.errors import NotFound, StoreError
from ringfence.store.models import Repository, Session, User


class Forbidden(StoreError):
    """The caller is authenticated but may not do this; the message says who may."""


def check_self(actor: User, user_id: str) -> None:
    if actor.id != user_id:
        raise Forbidden("you may act only on your own account")


def check_server_admin(actor: User) -> None:
    if not actor.server_admin:
        raise Forbidden("this needs a server admin")


def is_org_admin(actor: User, org_id: str | None) -> bool:
    return org_id is not None and actor.org_admin and actor.org_id == org_id


def check_org_admin(actor: User, org_id: str) -> None:
    if not is_org_admin(actor, org_id):
        raise Forbidden(f"this needs an admin of organization {org_id}")


def sees_org(actor: User, org_id: str) -> bool:
    return actor.server_admin or actor.org_id == org_id


def sees_user(actor: User, target: User) -> bool:
    """Metadata of a user (name, plan, organization, role): themselves, their organization's admins, a server admin."""
    return actor.id == target.id or actor.server_admin or is_org_admin(actor, target.org_id)


def visible_user(actor: User, target: User | None, user_id: str) -> User:
    if target is None or not sees_user(actor, target):
        raise NotFound(f"no user {user_id!r}")
    return target


def check_create_user(actor: User, org_id: str | None) -> None:
    if actor.server_admin:
        return
    if org_id is None:
        raise Forbidden("only a server admin creates consumer users")
    check_org_admin(actor, org_id)


def check_sees_keys(actor: User, target: User) -> None:
    """A user's tokens as metadata (name, prefix, ZDR, revoked): whoever sees the user may see them."""
    if not sees_user(actor, target):
        raise NotFound(f"no user {target.id!r}")


def check_mint_key(actor: User, target: User) -> None:
    """A token acts as its user, content included: only the user themselves or a server admin makes one."""
    if actor.id == target.id or actor.server_admin:
        return
    raise Forbidden(
        "a token is made by its own user or by a server admin: an organization admin never holds a member's "
        "credentials (they would read the member's content)"
    )


def check_revoke_key(actor: User, target: User) -> None:
    """Revoking grants nothing: the user, their organization's admins (offboarding) and a server admin may."""
    if actor.id == target.id or actor.server_admin or is_org_admin(actor, target.org_id):
        return
    raise Forbidden("a token is revoked by its own user, an admin of their organization or a server admin")


def managed_account(actor: User) -> str:
    """The account whose environments the caller manages: a consumer's own, an organization admin's organization."""
    if actor.org_id is not None and not actor.org_admin:
        raise Forbidden(f"only an admin of organization {actor.org_id} manages its environments")
    return actor.account_id


def check_manage_providers(actor: User, account_id: str) -> None:
    """An account's model providers (their keys included) are set and deleted by who manages the account: its
    organization's admins, or a consumer for their own account."""
    if actor.account_id != account_id or (actor.org_id is not None and not actor.org_admin):
        raise Forbidden(
            f"only who manages account {account_id} (an admin of its organization; a consumer for their own) sets "
            "its model providers"
        )


def check_manage_github_app(actor: User, org_id: str) -> None:
    """An organization's GitHub App (its private key included) is set and deleted by the organization's admins."""
    if not is_org_admin(actor, org_id):
        raise Forbidden(f"only an admin of organization {org_id} sets its GitHub App")


def check_sees_providers(actor: User, account_id: str) -> None:
    """Their names, kinds and base URLs (never a key): anyone of the account, and a server admin."""
    if actor.account_id != account_id and not actor.server_admin:
        raise NotFound(f"no account {account_id!r}")


def own_session(actor: User, row: Session | None, session_id: str) -> Session:
    """A session whose content the caller may read and act on: their own alone. Anyone else, admins included, is
    not even told that it exists."""
    if row is None or row.user_id != actor.id:
        raise NotFound(f"no session {session_id!r}")
    return row


def own_repository(actor: User, row: Repository | None, repository_id: str) -> Repository:
    """A connected repository the caller may act on (its credential included): their own alone."""
    if row is None or row.user_id != actor.id:
        raise NotFound(f"no repository {repository_id!r} for this user")
    return row


def sees_session_metadata(actor: User, row: Session) -> bool:
    """Ids, times, state and retention of a session: its user and the admins of its organization."""
    return row.user_id == actor.id or is_org_admin(actor, row.account_id)
