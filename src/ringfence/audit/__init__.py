"""The audit log: append-only records chained by SHA-256, with a signed head, verified end to end.

Owns: how records are chained, stored, verified and exported. Knows nothing of what the records mean: callers
pass a kind, a subject, content-free data and the policy stamp.
"""

from ringfence.audit.chain import AuditEntry, AuditError, AuditRecord, Verification, canonical, verify_rows
from ringfence.audit.log import AuditLog

__all__ = ["AuditEntry", "AuditError", "AuditLog", "AuditRecord", "Verification", "canonical", "verify_rows"]
