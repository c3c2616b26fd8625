"""Inputs the fuzz tests (tests/test_fuzz_*.py) found crashing Watchword, kept as plain regression tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from watchword import config
from watchword.decide.catalogue import Catalogue, CatalogueError
from watchword.jose import jwk


@pytest.mark.parametrize("alg", [[], ["RS256"], {}, {"RS256": 1}])
def test_c1_jwk_whose_alg_is_an_array_or_object_is_refused_not_a_type_error(alg: object) -> None:
    """A JWKS from an issuer (or a client's registered public JWK) with `"alg": []` raised TypeError."""
    with pytest.raises(jwk.KeySetError, match="alg must be a string"):
        jwk.load_jwk({"kty": "EC", "crv": "P-256", "alg": alg})
    with pytest.raises(jwk.KeySetError, match="alg must be a string"):
        jwk.load_jwks({"keys": [{"kty": "EC", "crv": "P-256", "alg": alg}]})


def test_a_settings_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    """tomllib raised UnicodeDecodeError, which `watchword serve` printed as a traceback."""
    path = tmp_path / "watchword.toml"
    path.write_bytes(b'host = "\xff"\n')
    with pytest.raises(config.ConfigError, match="not UTF-8"):
        config.load(path, environ={})


def test_a_settings_path_that_is_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="cannot read configuration file"):
        config.load(tmp_path, environ={})
    with pytest.raises(config.ConfigError, match="cannot read configuration file"):
        config.load(environ={"WATCHWORD_CONFIG": str(tmp_path)})


def test_a_catalogue_file_that_is_not_utf8_is_a_catalogue_error(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.toml"
    path.write_bytes(b'[roles]\nowner = "\xff"\n')
    with pytest.raises(CatalogueError, match="cannot read catalogue file"):
        Catalogue.load(path)
