"""Properties of the canonical event-type form (S3), the event and data-provider pattern matchers (S3, S4)
and object ids (S4): `watchword.decide.names`, and `decide` on top of it, checked against oracles written
independently here (character sets spelled out, fnmatch, counts of separators)."""

from __future__ import annotations

import string
import unicodedata
from fnmatch import fnmatchcase

from hypothesis import given, settings
from hypothesis import strategies as st

from watchword import reasons
from watchword.decide import names
from watchword.decide.catalogue import Catalogue
from watchword.decide.rules import decide
from watchword.domain import CredentialKind, Principal, Resource, Transport

CATALOGUE = Catalogue.load()
ORG = "org-a"
SETTINGS = settings(max_examples=400, deadline=None)
SEGMENT_CHARS = set(string.ascii_lowercase + string.digits + "_-")
# Letters that tempt: uppercase, the Kelvin sign (lowercases to "k"), a Cyrillic a, zero-width and
# bidi format characters, controls, glob metacharacters and separators.
TRICKY = "AZK\u212a\u0430\u00e9\u200b\u200e\u2028\ufeff\x00\x07\t\n\r */?[]!\\."
event_chars = st.sampled_from(sorted(SEGMENT_CHARS)) | st.sampled_from(list(TRICKY))
texts = st.text(event_chars, max_size=30)
segments = st.text(st.sampled_from(sorted(SEGMENT_CHARS)), min_size=1, max_size=8)
canonical = st.lists(segments, min_size=1, max_size=4).map(".".join)
pattern_segments = st.text(st.sampled_from([*sorted(SEGMENT_CHARS), "*", "?"]), min_size=1, max_size=6)
patterns = st.lists(pattern_segments, min_size=1, max_size=4).map(".".join) | st.just("*")


def is_canonical(event_type: str) -> bool:
    """docs/reference/actions.md, spelled out: dot-separated non-empty segments of [a-z0-9_-], <= 255."""
    parts = event_type.split(".")
    return len(event_type) <= 255 and all(part and set(part) <= SEGMENT_CHARS for part in parts)


def key(allowed: tuple[str, ...], denied: tuple[str, ...]) -> Principal:
    return Principal(
        id="k",
        kind=CredentialKind.API_KEY,
        transport=Transport.BEARER,
        credential_id="k",
        organization_id=ORG,
        permissions=frozenset({"event.send"}),
        event_types_allowed=allowed,
        event_types_denied=denied,
    )


def send(principal: Principal, event_type: str):
    resource = Resource(organization_id=ORG, application_id="app", event_type=event_type)
    return decide(CATALOGUE, principal, "event.send", resource)


# ---- S3: the canonical form ----


@SETTINGS
@given(texts | canonical)
def test_s3_an_event_type_is_accepted_exactly_when_it_is_in_canonical_form(event_type: str) -> None:
    assert (names.event_type_problem(event_type) is None) == is_canonical(event_type)


@SETTINGS
@given(canonical, st.sampled_from(list("*?[]\n\r\x00\u200b\u200e\ufeffAK\u212a")), st.data())
def test_s3_a_glob_control_format_or_uppercase_character_anywhere_is_refused(
    event_type: str, bad: str, data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(event_type)))
    spoiled = event_type[:at] + bad + event_type[at:]
    problem = names.event_type_problem(spoiled)
    assert problem is not None
    if unicodedata.category(bad) in ("Cc", "Cf"):
        assert "control" in problem


@SETTINGS
@given(canonical, st.lists(patterns, max_size=3), st.lists(patterns, max_size=3), st.data())
def test_s3_no_other_spelling_of_an_event_type_gets_further_than_the_event_type_itself(
    event_type: str, allowed: list[str], denied: list[str], data: st.DataObject
) -> None:
    principal = key(tuple(allowed), tuple(denied))
    upper = [i for i, char in enumerate(event_type) if char.isalpha()]
    flips = data.draw(st.sets(st.sampled_from(upper), min_size=1)) if upper else set()
    variant = "".join(char.upper() if i in flips else char for i, char in enumerate(event_type))
    if variant != event_type:
        refused = send(principal, variant)
        assert (refused.allowed, refused.reason, refused.rule) == (False, reasons.EVENT_TYPE_INVALID, "S3")
    decision = send(principal, event_type)
    expected = not any(fnmatchcase(event_type, p) for p in denied) and (
        not allowed or any(fnmatchcase(event_type, p) for p in allowed)
    )
    assert decision.allowed == expected


@SETTINGS
@given(texts, st.lists(patterns | texts, max_size=3), st.lists(patterns | texts, max_size=3))
def test_s3_an_allowed_event_type_is_canonical_and_matches_no_deny_pattern_in_any_case(
    event_type: str, allowed: list[str], denied: list[str]
) -> None:
    decision = send(key(tuple(allowed), tuple(denied)), event_type)
    assert decision.reason in reasons.REASONS
    if decision.allowed:
        assert is_canonical(event_type)
        assert not any(fnmatchcase(event_type, p.lower()) for p in denied if p.isascii())
        assert not allowed or any(fnmatchcase(event_type, p) for p in allowed)


@SETTINGS
@given(patterns | texts)
def test_s3_a_pattern_accepted_at_creation_is_lowercase_ascii_with_only_glob_extras(pattern: str) -> None:
    if names.event_pattern_problem(pattern) is None:
        assert set(pattern) <= SEGMENT_CHARS | set(".*?[]!")
        assert all(pattern.split("."))
    elif pattern.lower() != pattern and names.event_pattern_problem(pattern.lower()) is None:
        assert "lowercase" in (names.event_pattern_problem(pattern) or "")


# ---- S4: object ids and data-provider patterns ----

object_chars = st.sampled_from(list("abc-_1:.")) | st.sampled_from(list(TRICKY))
object_ids = st.text(object_chars, min_size=1, max_size=20)
object_patterns = st.text(st.sampled_from(list("abc-_1:.*?/")), min_size=1, max_size=12)


@SETTINGS
@given(object_ids, object_patterns)
def test_s4_a_pattern_match_is_an_fnmatch_within_the_same_separators(object_id: str, pattern: str) -> None:
    if names.object_matches(object_id, pattern):
        assert fnmatchcase(object_id, pattern)
        assert object_id.count("/") == pattern.count("/")


@SETTINGS
@given(st.text(st.sampled_from(list("abc-1")), min_size=1, max_size=8), object_ids)
def test_s4_a_star_never_reaches_past_a_separator(prefix: str, rest: str) -> None:
    assert not names.object_matches(f"{prefix}/{rest}", f"{prefix[:1]}*")
    assert not names.object_matches(f"{prefix}/{rest}", "*")


@SETTINGS
@given(object_ids, st.lists(object_patterns, max_size=3))
def test_s4_a_publish_is_allowed_only_for_a_clean_object_id_a_pattern_names(
    object_id: str, patterns_: list[str]
) -> None:
    token = Principal(
        id="t",
        kind=CredentialKind.TENANT_JWT,
        transport=Transport.BEARER,
        credential_id="s",
        organization_id=ORG,
        permissions=frozenset({"object.publish"}),
        data_provider_patterns=tuple(patterns_),
    )
    decision = decide(CATALOGUE, token, "object.publish", Resource(organization_id=ORG, object_id=object_id))
    clean = (
        "/" not in object_id
        and "\\" not in object_id
        and ".." not in object_id
        and not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in object_id)
    )
    if not clean:
        assert (decision.allowed, decision.reason, decision.rule) == (False, reasons.OBJECT_ID_INVALID, "S4")
    if decision.allowed:
        assert any(fnmatchcase(object_id, p) for p in patterns_)
