"""Fuzzing what an operator writes: the settings (TOML file + WATCHWORD_* variables), the action
catalogue, the `[[issuers]]` tables (C1) and the claim paths they name.

An operator's mistake must stop Watchword with the documented error type (ConfigError, CatalogueError,
pydantic's ValidationError), whose message the CLI prints, never with a traceback of another exception.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import pydantic
from hypothesis import given
from hypothesis import strategies as st

from watchword import config
from watchword.decide.catalogue import Catalogue, CatalogueError, Level
from watchword.identify import external_jwt
from watchword.identify.issuer_settings import IssuerSettings, load_issuers

from support.fuzz_settings import fuzz

T = TypeVar("T")


def outcome(call: Callable[[], T], *errors: type[Exception]) -> T | Exception:
    """The call's value, or the exception it raised if it is one of `errors` (any other propagates)."""
    try:
        return call()
    except errors as error:
        return error


# ---- a small TOML writer, so that structured values reach the validators ------------------------------


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string (a lone surrogate makes invalid TOML, also fine)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_document(values: Mapping[str, object]) -> str:
    return "\n".join(f"{json.dumps(name)} = {toml_value(value)}" for name, value in values.items())


scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.text(max_size=40),
    st.sampled_from(["", "0", "-1", "65536", "1e309", "true", "production", "sqlite:///x", "postgresql://"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
setting_names = st.sampled_from([*config.Settings.model_fields, "unknown_setting", "Port"])
issuer_tables = st.fixed_dictionaries(
    {
        "issuer": st.sampled_from(["https://idp.example", "urn:watchword", " x", ""]) | st.text(max_size=20),
        "audiences": st.lists(st.text(max_size=10), max_size=2) | values,
    },
    optional={
        "jwks_uri": st.sampled_from(["https://idp.example/jwks", "http://[::1", "ftp://x", "https://u:p@h/"])
        | values,
        "discovery_url": st.text(max_size=30),
        "algorithms": st.lists(st.sampled_from(["RS256", "HS256", "none", "ES256", "X"]), max_size=3)
        | values,
        "roles_claim": st.text(max_size=20),
        "organization_claim": st.text(max_size=20),
        "organizations_claim": st.text(max_size=20),
        "user_id_claim": st.text(max_size=20),
        "roles_source": st.sampled_from(["claims", "memberships", "both", "x"]),
        "leeway_seconds": scalars,
        "jwks_cache_seconds": scalars,
    },
)
settings_files = st.dictionaries(setting_names, values, max_size=6).flatmap(
    lambda table: st.one_of(
        st.just(table),
        st.lists(issuer_tables, max_size=2).map(lambda issuers: {**table, "issuers": issuers}),
    )
)
environments = st.dictionaries(
    st.sampled_from(
        [f"WATCHWORD_{name.upper()}" for name in config.Settings.model_fields]
        + ["WATCHWORD_UNKNOWN", "WATCHWORD_PORT_50051_TCP", "WATCHWORD_CONFIG", "HOME"]
    ),
    st.one_of(
        st.text(st.characters(exclude_characters="\x00"), max_size=30),
        st.sampled_from(["tcp://10.0.0.1:50051", "/", "/nonexistent", "production", "0", "-1"]),
    ),
    max_size=4,
)
file_bodies = st.one_of(
    settings_files.map(lambda table: toml_document(table).encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"\xff\xfe", b"port = \xff", b"[[issuers]]\nissuer = 1", b"port = 1\nport = 2"]),
)


@fuzz(examples=120)
@given(file_bodies, environments)
def test_any_settings_file_and_environment_load_or_stop_with_a_config_error(
    body: bytes, environment: dict[str, str]
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "watchword.toml"
        path.write_bytes(body)
        loaded = outcome(lambda: config.load(path, environ=environment), config.ConfigError)
    if isinstance(loaded, config.ConfigError):
        assert str(loaded)
    else:
        assert isinstance(loaded, config.Settings)


@fuzz(examples=50)
@given(environments)
def test_a_config_path_that_is_a_directory_or_missing_stops_with_a_config_error(
    environment: dict[str, str],
) -> None:
    for where in ("/", "/nonexistent/watchword.toml"):
        loaded = outcome(
            lambda where=where: config.load(Path(where), environ=environment), config.ConfigError
        )
        assert isinstance(loaded, config.ConfigError)


# ---- the action catalogue ---------------------------------------------------------------------------------

role_names = st.sampled_from(["owner", "admin", "viewer", ""]) | st.text(max_size=8)
catalogues = st.fixed_dictionaries(
    {},
    optional={
        "roles": st.dictionaries(role_names, st.text(max_size=10) | values, max_size=3) | values,
        "actions": st.dictionaries(
            st.text(max_size=12),
            st.fixed_dictionaries(
                {},
                optional={
                    "level": st.sampled_from([level.value for level in Level]) | values,
                    "roles": st.lists(role_names, max_size=3) | values,
                    "other": values,
                },
            )
            | values,
            max_size=4,
        )
        | values,
        "extra": values,
    },
)


@fuzz(examples=120)
@given(catalogues)
def test_any_catalogue_table_parses_or_is_refused_with_catalogue_error(data: dict[str, object]) -> None:
    parsed = outcome(lambda: Catalogue.parse(data, "fuzz"), CatalogueError)
    if isinstance(parsed, Catalogue):
        assert parsed.actions
        for action in parsed.actions.values():
            assert action.roles <= set(parsed.roles)


@fuzz(examples=60)
@given(
    st.one_of(
        catalogues.map(lambda table: toml_document(table).encode("utf-8", "surrogatepass")),
        st.binary(max_size=120),
        st.just(b'[roles]\nowner = "\xff"'),
    )
)
def test_any_catalogue_file_loads_or_is_refused_with_catalogue_error(body: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "catalogue.toml"
        path.write_bytes(body)
        outcome(lambda: Catalogue.load(path), CatalogueError)
        assert isinstance(outcome(lambda: Catalogue.load(Path(directory)), CatalogueError), CatalogueError)


# ---- C1 issuers and their claim paths ----------------------------------------------------------------------


@fuzz(examples=80)
@given(st.lists(issuer_tables, max_size=3) | values)
def test_c1_any_issuer_tables_validate_or_are_refused_with_a_validation_error(raw: object) -> None:
    issuers = outcome(lambda: load_issuers(raw), pydantic.ValidationError)
    if isinstance(issuers, list):
        assert len({issuer.issuer for issuer in issuers}) == len(issuers)


# What a claim path's names may hold: anything but dots and whitespace (and lone surrogates, which no
# TOML file or environment variable can carry).
path_segments = st.text(
    st.characters(exclude_characters=".", exclude_categories=["Cs", "Zs", "Zl", "Zp", "Cc"]),
    min_size=1,
    max_size=6,
).filter(lambda segment: not any(c.isspace() for c in segment))
claim_paths = st.lists(path_segments, min_size=1, max_size=4).map(".".join)
claim_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.text(max_size=12), st.sampled_from(["o:r", "/o/r", ":"])
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(path_segments, inner, max_size=4),
    max_leaves=10,
)
claims_documents = st.dictionaries(path_segments, claim_values, max_size=4)


@fuzz(examples=200)
@given(st.one_of(claim_paths, st.text(st.characters(exclude_categories=["Cs"]), max_size=20)))
def test_c1_a_claim_path_setting_is_accepted_exactly_when_it_names_dotted_names(path: str) -> None:
    settings = outcome(
        lambda: IssuerSettings(
            issuer="https://idp.example",
            audiences=["a"],
            jwks_file="k",
            roles_claim=path,
            organization_claim="org",
        ),
        pydantic.ValidationError,
    )
    well_formed = 0 < len(path) <= 200 and all(
        segment and not any(c.isspace() for c in segment) for segment in path.split(".")
    )
    assert isinstance(settings, IssuerSettings) == well_formed


@fuzz(examples=120)
@given(claims_documents, claim_paths, claim_paths, st.sampled_from(["organizations", "organization"]))
def test_c1_s1_memberships_from_any_claims_are_a_clean_answer_or_a_claims_refusal(
    claims: dict[str, object], first: str, second: str, style: str
) -> None:
    """Roles read from a hostile token's claims along configured paths: a value, or `_ClaimsInvalid`
    (which the verifier turns into token_claims_invalid), never another exception."""
    if style == "organizations":
        issuer = IssuerSettings(issuer="https://i", audiences=["a"], jwks_file="k", organizations_claim=first)
    else:
        issuer = IssuerSettings(
            issuer="https://i", audiences=["a"], jwks_file="k", organization_claim=first, roles_claim=second
        )
    found = outcome(lambda: external_jwt.memberships(claims, issuer), external_jwt._ClaimsInvalid)
    if isinstance(found, tuple):
        for organization, roles in found:
            assert organization
            assert roles
            assert list(roles) == sorted(set(roles))


@fuzz(examples=150)
@given(claims_documents, claim_paths, claim_values)
def test_c1_claim_at_finds_a_value_planted_at_its_path(
    claims: dict[str, object], path: str, planted: object
) -> None:
    names = path.split(".")
    document: dict[str, object] = dict(claims)
    node = document
    for name in names[:-1]:
        child = node.get(name)
        node[name] = child = dict(child) if isinstance(child, dict) else {}
        node = child
    node[names[-1]] = planted
    assert external_jwt.claim_at(document, path) == planted
    assert external_jwt.claim_at(document, path + ".absent.name") is external_jwt._MISSING or isinstance(
        planted, dict
    )
