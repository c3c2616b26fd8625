"""The exact patterns of the secrets Watchword mints (`secret_format`), for secret scanners (GitHub,
GitLab, trufflehog, gitleaks): one regular expression per kind, published in
docs/reference/secret-formats.md and docs/reference/secret-patterns.json (tests check that the three
agree and that each pattern matches exactly what `secret_format.mint` produces).

    wwak_<16 base62: credential id>_<32 base62: random><6 base62: CRC32 of everything before it>

The checksum is a CRC32 (below 62^6) written as 6 base62 digits, most significant first, so its first
digit is 0 to 4. A regular expression cannot check the CRC; `secret_format.parse` (and the report endpoint)
does, before any lookup.
"""

from __future__ import annotations

import json
from typing import Any

from watchword import secret_format
from watchword.identify import kinds

_BASE62 = "[0-9A-Za-z]"
# Around a secret: start or end of text, or a character that cannot be part of one.
BOUNDARY = r"\b"


def body_pattern(prefix: str) -> str:
    """The secret alone (for a full match), e.g. `wwak_[0-9A-Za-z]{16}_...`."""
    identifier = f"{_BASE62}{{{secret_format.ID_LENGTH}}}"
    random = f"{_BASE62}{{{secret_format.SECRET_LENGTH}}}"
    checksum = f"[0-4]{_BASE62}{{{secret_format.CHECKSUM_LENGTH - 1}}}"
    return f"{prefix}_{identifier}_{random}{checksum}"


def scan_pattern(prefix: str) -> str:
    """The pattern a scanner searches text with: the secret between word boundaries."""
    return f"{BOUNDARY}{body_pattern(prefix)}{BOUNDARY}"


def catalogue() -> list[dict[str, Any]]:
    """One entry per mintable kind: its scanner type name, prefix, catalogue id and pattern."""
    return [
        {
            "type": f"watchword_{row.cli_name.replace('-', '_')}",
            "kind": row.cli_name,
            "catalogue_id": row.catalogue_id,
            "prefix": f"{row.prefix}_",
            "regex": scan_pattern(row.prefix),
            "length": secret_format.TOKEN_LENGTH,
        }
        for row in kinds.KINDS
        if row.prefix
    ]


def document() -> str:
    """docs/reference/secret-patterns.json, as it must read."""
    fields = {
        "description": "Watchword secrets: prefix, 16-character credential id, 32 random characters, "
        "6-character base62 CRC32 checksum of everything before it",
        "patterns": catalogue(),
    }
    return json.dumps(fields, indent=2) + "\n"
