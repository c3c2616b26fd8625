"""Configuration and action catalogue are validated at start with messages that say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from watchword import config
from watchword.cli import main
from watchword.decide.catalogue import Catalogue, CatalogueError, Level

from support.cli import refused_start


def test_defaults_need_no_configuration_at_all() -> None:
    settings = config.load(environ={})
    assert settings.host == "127.0.0.1"
    assert settings.port == 50051
    assert settings.mode == "development"
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.uses_embedded_store


def test_file_then_environment_precedence(tmp_path: Path) -> None:
    path = tmp_path / "watchword.toml"
    path.write_text('port = 6000\nhost = "0.0.0.0"\n')
    settings = config.load(path, environ={"WATCHWORD_PORT": "7000"})
    assert (settings.host, settings.port) == ("0.0.0.0", 7000)
    assert config.load(environ={"WATCHWORD_CONFIG": str(path)}).port == 6000


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHWORD_PORT": "70000"}, "port (from WATCHWORD_PORT)"),
        ({"WATCHWORD_PORT": "http"}, "port (from WATCHWORD_PORT)"),
        ({"WATCHWORD_PROT": "1"}, "unknown environment variable WATCHWORD_PROT"),
        ({"WATCHWORD_MODE": "production"}, "production mode needs a master key"),
        ({"WATCHWORD_TLS_CERT_FILE": "/nonexistent.pem"}, "must be set together"),
        ({"WATCHWORD_DATABASE_URL": "mysql://x/y"}, "unsupported database backend 'mysql'"),
        ({"WATCHWORD_MAX_BATCH_ENTRIES": "0"}, "max_batch_entries"),
    ],
)
def test_invalid_settings_are_explained(environ: dict[str, str], expected: str) -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.load(environ=environ)
    assert expected in str(caught.value)


PRODUCTION = {"WATCHWORD_MODE": "production", "WATCHWORD_MASTER_KEY": "A" * 43}


@pytest.mark.parametrize(
    "issuer",
    [
        "urn:watchword",
        "http://watchword.example",
        "https://watchword.example/?tenant=a",
        "https://watchword.example/#x",
        "https:///path-only",
        "HTTPS//watchword.example",
    ],
)
def test_i5_production_refuses_an_issuer_that_is_not_an_https_url(issuer: str) -> None:
    with pytest.raises(config.ConfigError) as caught:
        config.load(environ={**PRODUCTION, "WATCHWORD_TOKEN_ISSUER": issuer})
    assert "production mode needs token_issuer to be an https URL" in str(caught.value)
    assert repr(issuer) in str(caught.value)
    assert "allow_non_https_issuer" in str(caught.value)


def test_i5_production_takes_an_https_issuer_or_an_explicit_exception() -> None:
    https = config.load(environ={**PRODUCTION, "WATCHWORD_TOKEN_ISSUER": "https://auth.example.com/ww"})
    assert https.token_issuer == "https://auth.example.com/ww"
    allowed = config.load(environ={**PRODUCTION, "WATCHWORD_ALLOW_NON_HTTPS_ISSUER": "true"})
    assert allowed.token_issuer == "urn:watchword"
    assert config.load(environ={}).token_issuer == "urn:watchword"  # development mode may


def test_unknown_key_in_file_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "watchword.toml"
    path.write_text("prot = 1\n")
    with pytest.raises(config.ConfigError) as caught:
        config.load(path, environ={})
    assert "prot (from" in str(caught.value)
    assert "known settings are host, port" in str(caught.value)


def test_file_that_is_not_toml_or_missing_is_explained(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1")
    with pytest.raises(config.ConfigError, match="is not valid TOML"):
        config.load(bad, environ={})
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.toml", environ={})


def test_tls_files_must_exist(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(
            environ={
                "WATCHWORD_TLS_CERT_FILE": str(tmp_path / "c.pem"),
                "WATCHWORD_TLS_KEY_FILE": str(tmp_path / "k.pem"),
            }
        )


def test_client_variables_do_not_trip_the_server(tmp_path: Path) -> None:
    assert config.load(environ={"WATCHWORD_ADMIN_TOKEN": "x", "WATCHWORD_ADDRESS": "y"}).port == 50051


def test_cli_reports_configuration_errors_without_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHWORD_PORT", "-1")
    assert main(["check-config"]) == 2
    err = capsys.readouterr().err
    assert "port (from WATCHWORD_PORT)" in err
    assert "Traceback" not in err


def test_default_catalogue_covers_the_reference_products() -> None:
    catalogue = Catalogue.load()
    for action in (
        "organization.get",
        "application.create",
        "application.list",
        "application.update",
        "event_type.create",
        "subscription.update",
        "event.send",
        "object.publish",
        "track",
        "traits",
        "alias",
    ):
        assert action in catalogue.actions
    assert catalogue.actions["application.create"].level is Level.ORGANIZATION
    assert catalogue.actions["event_type.create"].level is Level.APPLICATION
    assert catalogue.actions["event.send"].level is Level.EVENT_TYPE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[roles]\nviewer = "v"\n[actions."a.b"]\nlevel = "galaxy"\nroles = []\n', "unknown level 'galaxy'"),
        (
            '[roles]\nviewer = "v"\n[actions."a.b"]\nlevel = "application"\nroles = ["root"]\n',
            "unknown role(s) ['root']",
        ),
        ('[roles]\nviewer = "v"\n[actions]\n', "must name at least one action"),
        (
            '[roles]\nviewer = "v"\n[actions."a.b"]\nlevel = "application"\nextra = 1\n',
            "only `level` and `roles`",
        ),
        ("[rolez]\n", "unknown section"),
    ],
)
def test_bad_catalogues_are_refused_with_a_clear_message(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "catalogue.toml"
    path.write_text(text)
    with pytest.raises(CatalogueError) as caught:
        Catalogue.load(path)
    assert expected in str(caught.value)


def test_kubernetes_service_links_are_not_mistaken_for_settings() -> None:
    environ = {
        "WATCHWORD_SERVICE_HOST": "10.0.0.7",
        "WATCHWORD_SERVICE_PORT": "50051",
        "WATCHWORD_PORT_50051_TCP_ADDR": "10.0.0.7",
    }
    assert config.load(environ=environ).port == 50051
    with pytest.raises(config.ConfigError, match="enableServiceLinks: false"):
        config.load(environ={"WATCHWORD_PORT": "tcp://10.0.0.7:50051"})


def test_check_config_opens_the_master_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHWORD_MASTER_KEY_FILE", str(tmp_path / "missing.key"))
    assert main(["check-config"]) == 2
    assert "cannot read the master key file" in capsys.readouterr().err


@pytest.mark.server
def test_a_bad_catalogue_file_stops_the_server_at_start_with_its_reason(tmp_path: Path) -> None:
    bad = tmp_path / "catalogue.toml"
    bad.write_text('[roles]\nviewer = "v"\n[actions."x.y"]\nlevel = "application"\nroles = ["owner"]\n')
    result = refused_start(
        {
            "WATCHWORD_CATALOGUE_FILE": str(bad),
            "WATCHWORD_DATA_DIR": str(tmp_path / "d"),
            "WATCHWORD_PORT": "0",
        }
    )
    assert "names unknown role(s) ['owner']" in result.stderr


@pytest.mark.parametrize("value", ["59", "604801", "-1", "a day"])
def test_c4_c7_max_tenant_token_lifetime_is_validated(value: str) -> None:
    with pytest.raises(config.ConfigError, match="max_tenant_token_lifetime_seconds"):
        config.load(environ={"WATCHWORD_MAX_TENANT_TOKEN_LIFETIME_SECONDS": value})
    assert config.load(environ={}).max_tenant_token_lifetime_seconds == 86400
    settings = config.load(environ={"WATCHWORD_MAX_TENANT_TOKEN_LIFETIME_SECONDS": "600"})
    assert settings.max_tenant_token_lifetime_seconds == 600
