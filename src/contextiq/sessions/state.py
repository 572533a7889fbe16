"""ADK's state prefixes: one pure function buckets a delta, one applies a bucket (JSON merge patch)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from contextiq.core.types import JSON

APP = "app:"
USER = "user:"
TEMP = "temp:"


@dataclass(slots=True)
class SplitDelta:
    """A state delta sorted by owner; keys have their prefix removed."""

    app: JSON = field(default_factory=dict)
    user: JSON = field(default_factory=dict)
    session: JSON = field(default_factory=dict)
    temp: JSON = field(default_factory=dict)


def split_delta(delta: Mapping[str, Any]) -> SplitDelta:
    """Bucket a delta into app, user, session and temp keys (temp: is never persisted)."""
    out = SplitDelta()
    for key, value in delta.items():
        if key.startswith(APP):
            out.app[key[len(APP) :]] = value
        elif key.startswith(USER):
            out.user[key[len(USER) :]] = value
        elif key.startswith(TEMP):
            out.temp[key] = value
        else:
            out.session[key] = value
    return out


def without_temp(delta: Mapping[str, Any]) -> JSON:
    """Return the delta minus its temp: keys, as it is stored with the event."""
    return {k: v for k, v in delta.items() if not k.startswith(TEMP)}


def apply_delta(state: Mapping[str, Any], delta: Mapping[str, Any]) -> JSON:
    """Return `state` with `delta` applied: set each key, and a None value deletes it."""
    merged = dict(state)
    for key, value in delta.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def merged_state(session: Mapping[str, Any], app: Mapping[str, Any], user: Mapping[str, Any]) -> JSON:
    """Return the state a client sees: session keys plus app: and user: keys with their prefixes."""
    merged = dict(session)
    merged.update({APP + k: v for k, v in app.items()})
    merged.update({USER + k: v for k, v in user.items()})
    return merged
