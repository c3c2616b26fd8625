"""The opaque secret format: readable prefix, id, secret, checksum (C2, C3, C5 secrets; admin tokens)."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from watchword import secret_format
from watchword.domain import CredentialKind


def test_minted_secret_parses_back_to_its_kind_and_id() -> None:
    for kind, prefix in secret_format.PREFIXES.items():
        credential_id = secret_format.new_credential_id()
        token = secret_format.mint(kind, credential_id)
        assert token.startswith(prefix + "_" + credential_id + "_")
        assert len(token) == secret_format.TOKEN_LENGTH
        parsed = secret_format.parse(token)
        assert parsed == secret_format.ParsedSecret(kind=kind, credential_id=credential_id)


def test_two_secrets_for_one_id_differ() -> None:
    credential_id = secret_format.new_credential_id()
    assert secret_format.mint(CredentialKind.API_KEY, credential_id) != secret_format.mint(
        CredentialKind.API_KEY, credential_id
    )


def test_every_single_character_change_is_caught_or_changes_the_id() -> None:
    token = secret_format.mint(CredentialKind.API_KEY, secret_format.new_credential_id())
    caught = 0
    positions = range(len(token))
    for position in positions:
        for replacement in "0aZ_":
            if token[position] == replacement:
                continue
            mutated = token[:position] + replacement + token[position + 1 :]
            if secret_format.parse(mutated) is None:
                caught += 1
    # CRC32 over the body catches every single-character substitution.
    assert caught == sum(1 for p in positions for r in "0aZ_" if token[p] != r)


def test_unknown_prefix_wrong_length_and_alphabet_are_refused() -> None:
    token = secret_format.mint(CredentialKind.APPLICATION_SECRET, secret_format.new_credential_id())
    assert secret_format.parse("wwzz" + token[4:]) is None
    assert secret_format.parse(token + "A") is None
    assert secret_format.parse(token[:-1]) is None
    assert secret_format.parse(token.replace("_", "-")) is None
    assert secret_format.parse("") is None


def test_hash_is_not_the_secret_and_comparison_matches_only_the_secret() -> None:
    token = secret_format.mint(CredentialKind.API_KEY, secret_format.new_credential_id())
    stored = secret_format.hash_secret(token)
    assert token not in stored
    assert secret_format.secret_matches(token, stored)
    other = secret_format.mint(CredentialKind.API_KEY, secret_format.new_credential_id())
    assert not secret_format.secret_matches(other, stored)
    assert not secret_format.secret_matches(token, None)
    assert not secret_format.secret_matches(token, "")


def test_hint_reveals_prefix_and_id_only() -> None:
    credential_id = secret_format.new_credential_id()
    token = secret_format.mint(CredentialKind.STATIC_TOKEN, credential_id)
    assert secret_format.hint(token) == f"wwst_{credential_id}"


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_random_text_never_parses(text: str) -> None:
    # Any accepted string must be a minted one: the checksum makes a random hit ~1 in 56 billion.
    assert secret_format.parse(text) is None


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(secret_format.PREFIXES.values())),
    st.text(alphabet=string.ascii_letters + string.digits, min_size=16, max_size=16),
    st.text(alphabet=string.ascii_letters + string.digits, min_size=38, max_size=38),
)
def test_well_shaped_strings_without_a_valid_checksum_are_refused(prefix: str, ident: str, rest: str) -> None:
    candidate = f"{prefix}_{ident}_{rest}"
    body, checksum = candidate[:-6], candidate[-6:]
    if secret_format._checksum(body) != checksum:
        assert secret_format.parse(candidate) is None
