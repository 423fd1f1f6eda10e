"""The training export: exactly the sessions POLICY.md allows at time T, with a manifest, audited.

Owns: selecting eligible sessions by replaying each account's ledger through ringfence.policy at T (the same
function as `policy explain`), writing their prompts, outputs and code changes as JSON lines in a stable order,
and the manifest (policy version, T, session ids, content hash) recorded in the audit log. Ratings and feedback
transcripts are never exported. The same store and the same T give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ringfence.audit import AuditEntry
from ringfence.policy import format_time
from ringfence.store import ledger
from ringfence.store.content import read_content
from ringfence.store.db import Store
from ringfence.store.errors import Invalid, NotFound
from ringfence.store.models import Session


@dataclass(frozen=True)
class Manifest:
    policy_version: str
    policy_sha256: str
    at: str
    sessions: list[str]
    content_sha256: str

    def to_json(self) -> dict[str, Any]:
        return {
            "policy_version": self.policy_version,
            "policy_sha256": self.policy_sha256,
            "at": self.at,
            "count": len(self.sessions),
            "sessions": self.sessions,
            "content_sha256": self.content_sha256,
        }


def eligible_sessions(store: Store, at: datetime) -> list[tuple[str, str]]:
    """(session id, account id) of every session eligible for a training export at `at`, sorted by session id."""
    chosen: list[tuple[str, str]] = []
    with store.read() as db:
        accounts = db.scalars(
            select(Session.account_id).where(Session.state == "active", Session.zdr.is_(False)).distinct()
        ).all()
        for account_id in sorted(accounts):
            plan = store.rules.plan(ledger.policy_account(db, account_id).plan)
            if plan.training == "never":
                continue
            decided = ledger.decisions(store, db, account_id, at)
            chosen.extend((d.session, account_id) for d in decided.sessions.values() if d.eligible)
    return sorted(chosen)


def export_training(store: Store, at: datetime, out: Path, now: datetime, *, actor: str) -> Manifest:
    """Write the export and its manifest (`<out>.manifest.json`); refuse a time in the future."""
    if at > now:
        raise Invalid(f"export time {format_time(at)} is in the future (now {format_time(now)})")
    chosen = eligible_sessions(store, at)
    written: list[str] = []
    digest = hashlib.sha256()
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as handle:
        os.chmod(tmp, 0o600)
        for session_id, account_id in chosen:
            try:
                records = read_content(store, session_id)
            except NotFound:
                continue  # deleted (or swept) since it was selected: it must not be exported
            items = [{"kind": r.kind, "turn": r.turn, "text": r.text} for r in records]
            line = (
                json.dumps(
                    {"session": session_id, "account": account_id, "items": items}, sort_keys=True, ensure_ascii=False
                ).encode()
                + b"\n"
            )
            digest.update(line)
            handle.write(line)
            written.append(session_id)
    os.replace(tmp, out)
    manifest = Manifest(store.rules.version, store.rules.sha256, format_time(at), written, digest.hexdigest())
    Path(f"{out}.manifest.json").write_text(json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n")
    with store.write() as db:
        store.audit.append(
            db.connection(),
            AuditEntry(
                "export.training", "export", format_time(now), {**manifest.to_json(), "actor": actor}, store.rules.stamp
            ),
        )
    return manifest
