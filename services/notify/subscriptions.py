"""Webhook subscriptions: what they look like and which events they match (pure logic).

A subscription matches an event when the event's name (``sla.breached``) matches one of its
``event_types`` patterns — exact, ``sla.*`` (every event of a family) or ``*`` — and, if
``opd_codes`` is set, the event's ``data.opd_code`` is one of them. An OPD-filtered
subscription never receives events that name no OPD.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from services.notify.signing import secret_key

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_PATTERN = re.compile(r"^(\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?)$")


class Subscription(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    url: str
    secret: str = Field(repr=False)
    event_types: tuple[str, ...] = Field(min_length=1)
    opd_codes: tuple[str, ...] | None = None
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("name must be 1-63 chars of a-z, 0-9, '.', '_', '-',"
                             " starting with a letter or digit")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("url must be an absolute http:// or https:// URL")
        return v

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: str) -> str:
        secret_key(v)
        return v

    @field_validator("event_types")
    @classmethod
    def _event_types(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in v:
            if not _PATTERN.match(pattern):
                raise ValueError(f"event type {pattern!r} must be like 'sla.breached', 'sla.*' or '*'")
        return tuple(dict.fromkeys(v))

    @field_validator("opd_codes")
    @classmethod
    def _opd_codes(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is None:
            return None
        if not v:
            raise ValueError("opd_codes must be omitted/null (all OPDs) or non-empty")
        return tuple(dict.fromkeys(v))

    def matches(self, event_name: str, data: Mapping[str, Any]) -> bool:
        return self.enabled and matches(self.event_types, self.opd_codes, event_name, data)


def event_type_matches(pattern: str, event_name: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_name.startswith(pattern[:-1])
    return pattern == event_name


def matches(event_types: Iterable[str], opd_codes: Iterable[str] | None,
            event_name: str, data: Mapping[str, Any]) -> bool:
    if not any(event_type_matches(p, event_name) for p in event_types):
        return False
    if opd_codes is None:
        return True
    return data.get("opd_code") in set(opd_codes)


def matching(subscriptions: Iterable[Subscription], event_name: str,
             data: Mapping[str, Any]) -> list[Subscription]:
    return [s for s in subscriptions if s.matches(event_name, data)]


_FILE = TypeAdapter(list[Subscription])


def load_file(path: str | Path) -> list[Subscription]:
    """Read a subscriptions file (a JSON list of subscriptions); ``ValueError`` if invalid."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        subs = _FILE.validate_python(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from exc
    except Exception as exc:
        raise ValueError(f"{path}: invalid subscriptions: {exc}") from exc
    names = [s.name for s in subs]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"{path}: duplicate subscription names: {sorted(duplicates)}")
    return subs
