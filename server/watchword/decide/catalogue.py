"""The action catalogue: actions and their resource levels are data, loaded from TOML and checked."""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any


class Level(enum.StrEnum):
    ORGANIZATION = "organization"
    APPLICATION = "application"
    EVENT_TYPE = "event_type"
    OBJECT = "object"
    SUBJECT = "subject"


# Levels at or below one application: what an application secret (S2) may reach.
APPLICATION_LEVELS = frozenset({Level.APPLICATION, Level.EVENT_TYPE})


class CatalogueError(ValueError):
    """The catalogue file is unusable; the message names the entry and what is wrong."""


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    level: Level
    roles: frozenset[str]


@dataclass(frozen=True, slots=True)
class Catalogue:
    roles: dict[str, str]
    actions: dict[str, Action]

    def get(self, name: str) -> Action | None:
        return self.actions.get(name)

    def actions_at(self, levels: frozenset[Level]) -> frozenset[str]:
        return frozenset(name for name, action in self.actions.items() if action.level in levels)

    @classmethod
    def parse(cls, data: dict[str, Any], origin: str) -> Catalogue:
        roles = data.get("roles")
        actions = data.get("actions")
        unknown_sections = set(data) - {"roles", "actions"}
        if unknown_sections:
            raise CatalogueError(
                f"{origin}: unknown section(s) {sorted(unknown_sections)}; use [roles] and [actions]"
            )
        if not isinstance(roles, dict) or not all(isinstance(v, str) for v in roles.values()):
            raise CatalogueError(f"{origin}: [roles] must map each role name to its description")
        if not isinstance(actions, dict) or not actions:
            raise CatalogueError(f"{origin}: [actions] must name at least one action")
        parsed: dict[str, Action] = {}
        for name, entry in actions.items():
            where = f"{origin}: action {name!r}"
            if not isinstance(entry, dict) or set(entry) - {"level", "roles"}:
                raise CatalogueError(f"{where} must be a table with only `level` and `roles`")
            try:
                level = Level(entry.get("level"))
            except ValueError:
                raise CatalogueError(
                    f"{where} has unknown level {entry.get('level')!r}; "
                    f"use one of {[lv.value for lv in Level]}"
                ) from None
            granted = entry.get("roles", [])
            if not isinstance(granted, list) or not all(isinstance(r, str) for r in granted):
                raise CatalogueError(f"{where}: `roles` must be a list of role names")
            unknown_roles = sorted(set(granted) - set(roles))
            if unknown_roles:
                raise CatalogueError(
                    f"{where} names unknown role(s) {unknown_roles}; declare them under [roles]"
                )
            parsed[name] = Action(name=name, level=level, roles=frozenset(granted))
        return cls(roles=dict(roles), actions=parsed)

    @classmethod
    def load(cls, path: Path | None = None) -> Catalogue:
        if path is None:
            text = resources.files("watchword.decide").joinpath("default_catalogue.toml").read_text("utf-8")
            origin = "default catalogue"
        else:
            try:
                text = path.read_text("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CatalogueError(f"cannot read catalogue file {str(path)!r}: {exc}") from None
            origin = str(path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise CatalogueError(f"{origin} is not valid TOML: {exc}") from None
        return cls.parse(data, origin)
