"""The audit tables: the records and the single signed head row. Defined on the shared metadata for migrations."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, String, Table

from ringfence.store.base import Base

audit_records = Table(
    "audit_records",
    Base.metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("at", String(40), nullable=False),
    Column("kind", String(300), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("policy", String(300), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    Index("ix_audit_records_subject", "subject"),
    Index("ix_audit_records_kind", "kind"),
)

audit_head = Table(
    "audit_head",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    Column("mac", LargeBinary(32), nullable=False),
)
