"""O1-O5: every value SignOutbound turns into a header is checked by one module (`header_values`), at
creation (the admin API) and at signing. Properties against h11, the HTTP/1.1 library httpx sends with,
and signing-time checks of rows stored before the checks existed, on a real SQLite store."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path

import h11
import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from watchword import secret_format
from watchword.crypto.master_key import MasterKey, generate
from watchword.outbound import header_values, secrets, standard_webhooks
from watchword.outbound.credential import OutboundScheme
from watchword.outbound.signer import OutboundSigner, Signed
from watchword.store import models
from watchword.store.repository import Store

from support.fuzz_settings import fuzz
from support.sqlite import migrated_sqlite_url

MASTER = MasterKey.from_text(generate(), "test")
URL = "https://customer.example/hooks"
INJECTIONS = ["t\r\nX-Injected: 1", "t\nX: 1", "t\r", "t\x00", "\x85t", "t\x7f", " t", "t\t"]
any_text = st.text(max_size=40) | st.text(st.characters(max_codepoint=0x7F), max_size=40)


def h11_accepts(name: str, value: str) -> bool:
    """Whether h11 (httpx's HTTP/1.1) would send this header, checked by h11 itself."""
    try:
        h11.Request(method="POST", target="/", headers=[("Host", "x"), (name, value.encode("latin-1"))])
    except (h11.LocalProtocolError, UnicodeEncodeError):
        return False
    return True


# ---- properties ----


@fuzz(examples=300)
@given(any_text)
def test_o1_o5_an_accepted_field_value_is_one_h11_sends_and_holds_no_line_break(value: str) -> None:
    if header_values.field_value_problem(value) is None:
        assert h11_accepts("x-value", value)
        assert not any(char in value for char in "\r\n\x00")
        assert value == value.strip(" \t")
        assert value.isascii()
    if any(char in value for char in "\r\n\x00"):
        assert header_values.field_value_problem(value) is not None


@fuzz(examples=300)
@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40))
def test_o1_o3_every_visible_ascii_word_is_a_usable_bearer_token(token: str) -> None:
    assert header_values.bearer_token_problem(token) is None
    assert h11_accepts("Authorization", f"Bearer {token}")


@fuzz(examples=300)
@given(any_text)
def test_o1_o3_o4_an_accepted_bearer_token_is_one_word_h11_sends(token: str) -> None:
    if header_values.bearer_token_problem(token) is None:
        assert token
        assert not any(char.isspace() for char in token)
        assert h11_accepts("Authorization", f"Bearer {token}")
    # Exactly the visible ASCII words: h11 alone lets controls such as ESC through, Watchword does not.
    visible = bool(token) and all(0x21 <= ord(char) <= 0x7E for char in token)
    assert (header_values.bearer_token_problem(token) is None) == visible


@fuzz(examples=300)
@given(any_text)
def test_o2_an_accepted_password_has_no_control_character(password: str) -> None:
    if header_values.basic_part_problem(password) is None:
        assert all(ord(char) >= 0x20 and not 0x7F <= ord(char) <= 0x9F for char in password)
    assert (header_values.basic_part_problem(password, user_id=True) is None) <= (":" not in password)


@fuzz(examples=300)
@given(any_text | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=300))
def test_o5_an_accepted_message_id_has_no_dot_and_verifies_with_the_official_package(message_id: str) -> None:
    if header_values.message_id_problem(message_id) is not None:
        assert (
            "." in message_id
            or not message_id.isascii()
            or not 0 < len(message_id) <= 255
            or any(not (char.isalnum() or char in "_-") for char in message_id)
        )
        return
    assert "." not in message_id
    assert 0 < len(message_id) <= 255
    assert h11_accepts("webhook-id", message_id)
    secret = secrets.new_payload_signing_secret()
    signed = dict(standard_webhooks.headers([secret], message_id, int(time.time()), b"{}"))
    assert Webhook(secret).verify(b"{}", signed) == {}
    assert signed["webhook-id"] == message_id


@pytest.mark.parametrize("value", INJECTIONS)
def test_o1_o2_o5_line_breaks_and_controls_are_refused_by_every_check(value: str) -> None:
    assert header_values.field_value_problem(value)
    assert header_values.bearer_token_problem(value)
    assert header_values.message_id_problem(value)
    if any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in value):
        assert header_values.basic_part_problem(value)


def test_o5_a_dot_in_the_message_id_is_refused_as_standard_webhooks_says() -> None:
    assert header_values.message_id_problem("msg_1.1700000000")
    assert header_values.message_id_problem("msg_1") is None
    assert header_values.message_id_problem("0b7e6b2e-51f0-4c4e-9a51-3bd3e1f8b0a2") is None


# ---- at signing, for rows stored before the checks ----


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    url = migrated_sqlite_url(tmp_path)
    opened = Store.connect(url)
    yield opened
    await opened.close()


async def stored(store: Store, scheme: int, given: secrets.OutboundSecrets, **fields: object) -> str:
    """An outbound row written straight into the store, as a version without the admin checks did."""
    organization = await store.create_organization("legacy")
    row = models.OutboundCredential(
        id=secret_format.new_credential_id(),
        organization_id=organization.id,
        name="legacy",
        scheme=scheme,
        sealed_secrets=b"",
        **fields,
    )
    row.sealed_secrets = secrets.seal(MASTER, row.id, given)
    await store.add_outbound_credential(row)
    return row.id


async def test_o1_a_stored_bearer_token_with_cr_lf_is_refused_at_signing(store: Store) -> None:
    credential = await stored(
        store, OutboundScheme.BEARER, secrets.OutboundSecrets(bearer_token="t\r\nX-Injected: 1")
    )
    failure = await OutboundSigner(store, MASTER).sign(credential, URL, b"{}", "", False)
    assert not isinstance(failure, Signed)
    assert (failure.reason, failure.retryable) == ("outbound_credential_invalid", False)
    assert "bearer token" in failure.message
    assert "X-Injected" not in failure.message


async def test_o2_a_stored_password_or_username_with_cr_lf_is_refused_at_signing(store: Store) -> None:
    signer = OutboundSigner(store, MASTER)
    for username, password in (("hooks", "p\r\nX: 1"), ("ho\nks", "p")):
        credential = await stored(
            store, OutboundScheme.BASIC, secrets.OutboundSecrets(password=password), username=username
        )
        failure = await signer.sign(credential, URL, b"{}", "", False)
        assert not isinstance(failure, Signed)
        assert (failure.reason, failure.retryable) == ("outbound_credential_invalid", False)
        assert "X: 1" not in failure.message


async def test_o2_a_stored_unicode_password_still_signs(store: Store) -> None:
    credential = await stored(
        store, OutboundScheme.BASIC, secrets.OutboundSecrets(password="p@ss:wörd"), username="hooks"
    )
    signed = await OutboundSigner(store, MASTER).sign(credential, URL, b"{}", "", False)
    assert isinstance(signed, Signed)
    (_, value), *_ = signed.headers
    assert base64.b64decode(value.removeprefix("Basic ")).decode() == "hooks:p@ss:wörd"


@pytest.mark.parametrize("message_id", ["msg\r\nX-Injected: 1", "msg_1.1700000000", "m" * 256, "msg\u200b1"])
async def test_o5_a_message_id_outside_the_standard_webhooks_charset_is_refused_at_signing(
    store: Store, message_id: str
) -> None:
    signing = secrets.new_payload_signing_secret()
    credential = await stored(
        store, OutboundScheme.NONE, secrets.OutboundSecrets(payload_signing_secret=signing), sign_payload=True
    )
    failure = await OutboundSigner(store, MASTER).sign(credential, URL, b"{}", message_id, False)
    assert not isinstance(failure, Signed)
    assert (failure.reason, failure.retryable) == ("message_id_invalid", False)
