"""Tokens signed the way Watchword's issuer will sign them (C8), with the key a test server created."""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from watchword.crypto.master_key import MasterKey
from watchword.issue import signing_keys


def signing_key(data_dir: Path) -> tuple[str, Any]:
    """The active signing key of the server whose data directory this is: its kid and private key."""
    with sqlite3.connect(data_dir / "watchword.db") as connection:
        row = connection.execute(
            "SELECT kid, encrypted_private_key FROM signing_keys WHERE active"
        ).fetchone()
    kid, sealed = row
    pem = MasterKey.from_file(data_dir / "master.key").open(sealed, signing_keys.sealing_purpose(kid))
    return kid, serialization.load_pem_private_key(pem, password=None)


def watchword_token(
    data_dir: Path,
    org: str,
    /,
    *,
    key: Any = None,
    kid: str | None = None,
    typ: str = "at+jwt",
    **claims: Any,
) -> str:
    """A C8 token; `claims` override the defaults and a None value removes a claim."""
    real_kid, real_key = signing_key(data_dir)
    now = int(time.time())
    body = {
        "iss": "urn:watchword",
        "aud": "urn:watchword:api",
        "sub": "key-holder",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "organization_id": org,
        "scope": "event.send application.list",
        **claims,
    }
    body = {name: value for name, value in body.items() if value is not None}
    headers = {"kid": kid or real_kid, "typ": typ}
    return jwt.encode(body, key or real_key, algorithm="ES256", headers=headers)
