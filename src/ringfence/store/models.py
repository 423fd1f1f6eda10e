"""The SQL schema of ringfence (SQLAlchemy 2 declarative models; migrations in store/migrations).

Owns: tables for organizations, users, API keys, connected repositories, the policy ledger (every consent, DPP,
ZDR, activity, delete, feedback and rating event with its per-account sequence number), environments, sessions
with their materialized retention deadline, wrapped data keys, encrypted content, feedback and ratings. Types
are portable (SQLite and PostgreSQL). No table holds plaintext session content.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

import ringfence.audit.table  # noqa: F401  (registers the audit tables on the shared metadata)
from ringfence.store.base import Base, UTCDateTime


class Meta(Base):
    """Facts about this store: the id of the master key that wraps its data keys, the schema's creation time."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    plan: Mapped[str] = mapped_column(String(40))
    dpp: Mapped[bool] = mapped_column(Boolean, default=False)
    zdr: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class User(Base):
    """A person. A consumer has their own plan; a member of an organization works under the org's plan."""

    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    plan: Mapped[str | None] = mapped_column(String(40), nullable=True)
    org_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id"), nullable=True, index=True)
    org_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    server_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    training: Mapped[bool] = mapped_column(Boolean, default=False)  # current consumer setting (ledger has history)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    @property
    def account_id(self) -> str:
        """The policy account: the organization for members, the user for consumers."""
        return self.org_id or self.id


class ApiKey(Base):
    """A bearer token, stored only as its SHA-256; `prefix` finds the row without scanning."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    zdr: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Repository(Base):
    """A repository a user connected. A session may be started only on one of these."""

    __tablename__ = "repositories"
    __table_args__ = (UniqueConstraint("user_id", "host", "owner", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    host: Mapped[str] = mapped_column(String(253))
    owner: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(100))
    url: Mapped[str] = mapped_column(String(600))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RepositoryCredential(Base):
    """The credential the gateway uses for a connected repository, sealed under its own data key (wrapped by the
    master key). Decrypted only by the gateway, when it adds the credential to an upstream request."""

    __tablename__ = "repository_credentials"
    repository_id: Mapped[str] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # "basic" or "bearer" (a token), or "github-app" (app id + key)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(32))
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PolicyEvent(Base):
    """One entry of an account's policy history, ordered by its per-account `seq` (never by time)."""

    __tablename__ = "policy_events"
    __table_args__ = (UniqueConstraint("account_id", "seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(40))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    type: Mapped[str] = mapped_column(String(20))
    session_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    value: Mapped[object | None] = mapped_column(JSON, nullable=True)
    zdr_key: Mapped[bool] = mapped_column(Boolean, default=False)
    actor: Mapped[str] = mapped_column(String(40))
    policy: Mapped[str] = mapped_column(String(120))


class Session(Base):
    """A session's metadata with the policy's retention decision materialized for the sweeper's index."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_state_delete_after", "state", "delete_after"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    repository_id: Mapped[str | None] = mapped_column(ForeignKey("repositories.id"), nullable=True)
    zdr: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(20))  # active | deleted | expired
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime)
    retention_rule: Mapped[str | None] = mapped_column(String(60), nullable=True)
    delete_after: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    policy: Mapped[str] = mapped_column(String(120))
    environment_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # None: the built-in default
    # Set when a server crash left the session without its sandbox; cleared when it is resumed.
    interrupted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    turns: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # metadata: kept under ZDR too
    backend: Mapped[str | None] = mapped_column(String(20), nullable=True)  # the sandbox backend it ran on last


class Environment(Base):
    """Where an account's sessions run: network mode and lists, agent template, limits, setup script (with its
    own network policy) and the telemetry switch, as validated settings (ringfence.sessions.environments)."""

    __tablename__ = "environments"
    __table_args__ = (UniqueConstraint("account_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40), index=True)
    name: Mapped[str] = mapped_column(String(100))
    settings: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class GitHubAppRow(Base):
    """An organization's GitHub App: its id, API URL and private key (sealed under its own data key, wrapped by the
    master key; unsealed only when a session of a member needs an installation token)."""

    __tablename__ = "github_apps"
    org_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64))
    api_url: Mapped[str] = mapped_column(String(500))
    git_host: Mapped[str] = mapped_column(String(255))  # the host whose repositories the app serves
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(32))
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ModelProvider(Base):
    """A model provider an account's sessions use: its kind, base URL and key (sealed under its own data key,
    wrapped by the master key; unsealed only when a session's gateway route is made)."""

    __tablename__ = "model_providers"
    __table_args__ = (UniqueConstraint("account_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40), index=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    base_url: Mapped[str] = mapped_column(String(500))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(32))
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DataKey(Base):
    """A data key wrapped by the master key. Deleting this row is what makes its content unreadable."""

    __tablename__ = "data_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ContentItem(Base):
    """One encrypted piece of session content (prompt, output, code change, feedback transcript)."""

    __tablename__ = "content_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    key_id: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    turn: Mapped[int] = mapped_column(Integer)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Feedback(Base):
    """A feedback report with its transcript, under its own data key and its own 5-year deadline."""

    __tablename__ = "feedback"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    key_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delete_after: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Rating(Base):
    """A session-quality rating: only the value, never content."""

    __tablename__ = "ratings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    value: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
