"""Shared machinery: configuration, storage, caching, errors. Never imports a bounded context."""
