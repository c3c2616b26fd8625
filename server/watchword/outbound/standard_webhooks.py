"""O5: Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`, `webhook-signature`).

The signature is `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")). During a rotation overlap
both the new and the previous secret sign, space-separated, so receivers holding either one verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from watchword.outbound.secrets import payload_key


def new_message_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(payload_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(secrets_in_use: list[str], message_id: str, timestamp: int, body: bytes) -> list[tuple[str, str]]:
    signatures = " ".join(signature(secret, message_id, timestamp, body) for secret in secrets_in_use)
    return [
        ("webhook-id", message_id),
        ("webhook-timestamp", str(timestamp)),
        ("webhook-signature", signatures),
    ]
