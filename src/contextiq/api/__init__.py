"""The HTTP face of ContextIQ: the app factory, auth, errors, metrics and health."""

from __future__ import annotations

from contextiq.api.app import create_app

__all__ = ["create_app"]
