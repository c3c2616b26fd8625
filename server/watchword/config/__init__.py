"""Configuration: one TOML file plus `WATCHWORD_*` environment variables, validated at start.

`settings` holds every setting (`Settings`, documented in the README), `loading` reads the file and the
environment (`load`), and `options` translates the settings into what each component is built with.
"""

from watchword.config.loading import CLIENT_ENV, CONFIG_FILE_ENV, ENV_PREFIX, ConfigError, load
from watchword.config.settings import MAX_WORKERS, Settings, is_https_issuer, usable_cores, worker_count

__all__ = [
    "CLIENT_ENV",
    "CONFIG_FILE_ENV",
    "ENV_PREFIX",
    "MAX_WORKERS",
    "ConfigError",
    "Settings",
    "is_https_issuer",
    "load",
    "usable_cores",
    "worker_count",
]
