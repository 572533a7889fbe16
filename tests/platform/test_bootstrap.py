"""The embedded server's first start: default organization and an admin key file (mode 0600)."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager

from contextiq.api import create_app
from contextiq.core.config import Settings


async def test_first_start_creates_default_org_and_admin_key(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", worker_enabled=False, env="test")
    app = create_app(settings)
    async with LifespanManager(app):
        key_file = tmp_path / "data" / "admin.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_text().strip()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            org = await http.get("/v1/organization", headers={"Authorization": f"Bearer {key}"})
            assert org.status_code == 200 and org.json()["slug"] == "default"
            assert (await http.get("/healthz")).json()["status"] == "ok"
            ready = await http.get("/readyz")
            assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
    # A second start keeps the same key: nothing is recreated.
    app2 = create_app(settings)
    async with LifespanManager(app2):
        assert (tmp_path / "data" / "admin.key").read_text().strip() == key
