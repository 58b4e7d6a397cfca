"""`hala data audit`: the defects of a conversation corpus (ours or a released one), each named with
its row, check and reason. `checks` holds the rules, `stage` the pass, `page` the HTML."""

from hala.audit.config import AuditConfig
from hala.audit.stage import audit

__all__ = ["AuditConfig", "audit"]
