"""Secrets never leave the engine in an error text.

A server may echo what it was sent: a 401 body quoting `Authorization: Bearer sk-...`, a proxy
repeating the request headers, an HTTP library quoting an illegal header value. Error texts end
up in logs, `rejected/` rows and exceptions, so every one the engine produces passes through
`redact` first: the API key's own value wherever it appears, any `Bearer` or `Basic`
credential, `api_key=...`-style fields and the password of a `user:pass@host` URL.
"""

from __future__ import annotations

import os
import re

HIDDEN = "[redacted]"
_SCHEME = re.compile(r"\b((?i:bearer)|Basic)(\s+)[A-Za-z0-9._~+/=:-]{4,}")
_FIELD = re.compile(  # `api_key=...`, `"authorization": "..."`; a scheme word (Bearer) is left to _SCHEME
    r"""(?i)(["']?(?:api[_-]?key|x-api-key|authorization|access[_-]?token)["']?\s*[:=]\s*["']?)"""
    r"""(?!\[redacted\]|(?:bearer|basic)\s)[^"'\s,;}&]+"""
)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]*:[^/\s@]*@")


def api_key(env: str) -> str | None:
    """The key the engine sends, read from the environment variable the config names."""
    return os.environ.get(env) or None


def redact(text: str, *secrets: str | None) -> str:
    """`text` with every secret value and credential-shaped string replaced by [redacted]."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, HIDDEN)
    text = _SCHEME.sub(lambda m: f"{m.group(1)}{m.group(2)}{HIDDEN}", text)
    text = _FIELD.sub(lambda m: f"{m.group(1)}{HIDDEN}", text)
    return _USERINFO.sub(lambda m: f"{m.group(1)}{HIDDEN}@", text)
