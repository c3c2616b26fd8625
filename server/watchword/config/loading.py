"""Reading the configuration: one TOML file plus `WATCHWORD_*` environment variables.

Precedence: defaults < file < environment. An unknown key, a wrong type or a dangerous combination stops
the service with a message that says what to fix (`ConfigError`).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from watchword.config.settings import Settings

ENV_PREFIX = "WATCHWORD_"
CONFIG_FILE_ENV = "WATCHWORD_CONFIG"
# Read by the CLI's admin commands, not by the server; allowed beside the server's own variables.
CLIENT_ENV = frozenset(
    {
        "WATCHWORD_ADMIN_TOKEN",
        "WATCHWORD_ADDRESS",
        "WATCHWORD_CA_FILE",
        "WATCHWORD_CLIENT_CERT_FILE",  # C10: the CLI's own certificate for mutual TLS
        "WATCHWORD_CLIENT_KEY_FILE",
    }
)


class ConfigError(Exception):
    """The configuration cannot be used; the message lists every problem and how to fix it."""


# Kubernetes injects service links for a Service named "watchword" (WATCHWORD_SERVICE_HOST,
# WATCHWORD_PORT_50051_TCP_ADDR, ...): not ours, so not typos either.
_SERVICE_LINK = re.compile(r"WATCHWORD_(SERVICE_(HOST|PORT)\w*|PORT_\d+_(TCP|UDP|SCTP)\w*)")


def _env_overrides(environ: dict[str, str]) -> dict[str, str]:
    known = {name.upper(): name for name in Settings.model_fields}
    overrides: dict[str, str] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key == CONFIG_FILE_ENV or key in CLIENT_ENV:
            continue
        if _SERVICE_LINK.fullmatch(key):
            continue
        if key == "WATCHWORD_PORT" and "://" in value:
            raise ConfigError(
                f"WATCHWORD_PORT={value!r} looks like a Kubernetes service link, not a port: set "
                "`enableServiceLinks: false` on the pod, or give the Service another name"
            )
        name = known.get(key[len(ENV_PREFIX) :])
        if name is None:
            raise ConfigError(
                f"unknown environment variable {key}: known ones are "
                + ", ".join(sorted(ENV_PREFIX + n for n in known))
            )
        overrides[name] = value
    return overrides


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {str(path)!r} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"configuration file {str(path)!r} is not UTF-8 text") from None
    except OSError as exc:  # a directory, no permission, ...
        raise ConfigError(f"cannot read configuration file {str(path)!r}: {exc.strerror}") from None


def _explain(exc: ValidationError, sources: dict[str, str]) -> str:
    lines = ["invalid configuration:"]
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "(settings)"
        where = sources.get(field, "")
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden" and len(error["loc"]) == 1:
            message = "unknown setting; known settings are " + ", ".join(Settings.model_fields)
        lines.append(f"  - {field}{f' ({where})' if where else ''}: {message}")
    return "\n".join(lines)


def load(config_file: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Build the settings from the file (argument, else $WATCHWORD_CONFIG) and the environment."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = config_file or (Path(environ[CONFIG_FILE_ENV]) if environ.get(CONFIG_FILE_ENV) else None)
    if path is not None:
        from_file = _read_file(path)
        values.update(from_file)
        sources.update({key: f"from {path}" for key in from_file})
    from_env = _env_overrides(environ)
    values.update(from_env)
    sources.update({key: f"from {ENV_PREFIX}{key.upper()}" for key in from_env})
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, sources)) from None
