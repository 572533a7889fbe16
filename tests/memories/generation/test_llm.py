"""The LLM path against a local server speaking the OpenAI chat-completions protocol.

The server answers extraction with scripted facts and consolidation by a scripted rule (UPDATE the
listed memory with the candidate's subject, else CREATE); it records every call, so the tests can
hold the job to its budget: one extraction call and one consolidation call, whatever the size.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from contextiq.api import create_app
from contextiq.core.llm.embeddings import EmbeddingProvider
from contextiq.runtime import Runtime
from tests.conftest import Tenant, make_settings, new_tenant

MODEL = "scripted-model"

CONVERSATION = [
    ("user", "Hi, my name is Alice."),
    ("agent", "Hello Alice! How can I help?"),
    ("user", "I prefer dark mode interfaces, by the way."),
    ("agent", "Noted."),
    ("user", "I live in Berlin."),
    ("agent", "Berlin is lovely."),
    ("user", "What's the weather like today?"),
    ("agent", "Sunny and 21 degrees."),
    ("user", "Please always answer me in English."),
    ("agent", "Of course."),
    ("user", "Can you recommend a book?"),
    ("agent", "Try 'The Left Hand of Darkness'."),
    ("user", "Thanks!"),
    ("agent", "You're welcome."),
    ("user", "Actually, I now prefer light mode interfaces."),
    ("agent", "Switched to light mode."),
    ("user", "lol ok"),
    ("agent", "Anything else?"),
    ("user", "No, that's all."),
    ("agent", "Bye!"),
]

FACTS = [
    {"fact": "My name is Alice.", "topic": "USER_PERSONAL_INFO", "confidence": 1.0, "source_events": [1],
     "subject": "personal:name", "is_retraction": False},
    {"fact": "I prefer dark mode interfaces.", "topic": "USER_PREFERENCES", "confidence": 0.9,
     "source_events": [3], "subject": "preference:ui mode", "is_retraction": False},
    {"fact": "I live in Berlin.", "topic": "USER_PERSONAL_INFO", "confidence": 1.0, "source_events": [5],
     "subject": "personal:location", "is_retraction": False},
    {"fact": "Always answer me in English.", "topic": "EXPLICIT_INSTRUCTIONS", "confidence": 1.0,
     "source_events": [9], "subject": "instruction:response language", "is_retraction": False},
    {"fact": "I now prefer light mode interfaces.", "topic": "USER_PREFERENCES", "confidence": 0.95,
     "source_events": [15], "subject": "preference:ui mode", "is_retraction": False},
]


@dataclass
class FakeOpenAI:
    """A chat-completions endpoint with scripted answers, in a thread."""

    status: int = 200
    calls: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["response_format"]["json_schema"]["name"]
        if name == "memory_facts":
            content, usage = {"facts": FACTS}, (400, 120)
        else:
            content, usage = {"decisions": self.decide(body["messages"][-1]["content"])}, (300, 60)
        return {
            "id": f"chatcmpl-{len(self.calls)}", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": json.dumps(content)}}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
        }

    @staticmethod
    def decide(prompt: str) -> list[dict[str, Any]]:
        decisions = []
        for line in prompt.splitlines():
            if not line.startswith("{"):
                continue
            item = json.loads(line)
            same = [m for m in item["memories"] if item["subject"] and m["subject"] == item["subject"]]
            if same:
                decisions.append({"candidate": item["candidate"], "action": "UPDATE", "target": same[0]["ref"],
                                  "fact": item["fact"], "reason": "the preference changed"})
            else:
                decisions.append({"candidate": item["candidate"], "action": "CREATE", "target": None,
                                  "fact": None, "reason": "new information"})
        return decisions


@pytest.fixture
def llm() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            fake.calls.append(body)
            if self.path != "/v1/chat/completions" or fake.status != 200:
                payload, status = {"error": {"message": "invalid api key"}}, fake.status if fake.status != 200 else 404
            else:
                payload, status = fake.answer(body), 200
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
async def llm_client(
    database_url: str, tmp_path: Path, embedder: EmbeddingProvider, llm: FakeOpenAI
) -> AsyncIterator[tuple[httpx.AsyncClient, Tenant]]:
    settings = make_settings(tmp_path, database_url, llm_base_url=llm.url, llm_model=MODEL, llm_api_key="sk-test")
    rt = Runtime(settings, embeddings=embedder)
    try:
        tenant = await new_tenant(rt)
        transport = httpx.ASGITransport(app=create_app(runtime=rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://contextiq.test") as http:
            yield http, tenant
    finally:
        await rt.aclose()


def events_body(**config: Any) -> dict[str, Any]:
    return {
        "scope": {"user_id": "alice"},
        "source_type": "events",
        "events": [{"author": a, "text": t} for a, t in CONVERSATION],
        "config": {"wait_for_completion": True, **config},
    }


async def test_llm_generation_makes_two_calls_for_twenty_events_and_records_usage(
    llm_client: tuple[httpx.AsyncClient, Tenant], llm: FakeOpenAI
) -> None:
    client, tenant = llm_client
    response = await client.post("/v1/memories:generate", json=events_body(), headers=tenant.headers)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "completed", job
    assert len(llm.calls) == 2
    assert [c["response_format"]["json_schema"]["name"] for c in llm.calls] == ["memory_facts", "memory_decisions"]
    assert {c["model"] for c in llm.calls} == {MODEL}
    assert job["extractor"] == f"llm:{MODEL}"
    assert job["usage"] == {"calls": 2, "prompt_tokens": 700, "completion_tokens": 180, "total_tokens": 880}
    result = job["result"]
    assert (result["memories_created"], result["memories_updated"], result["extracted_count"]) == (4, 1, 5)
    assert [m["fact"] for m in job["extracted_memories"]] == [f["fact"] for f in FACTS]

    memories = (await client.get("/v1/memories", params={"scope": json.dumps({"user_id": "alice"})},
                                 headers=tenant.headers)).json()["items"]
    facts = sorted(m["fact"] for m in memories)
    assert facts == ["Always answer me in English.", "I live in Berlin.", "I now prefer light mode interfaces.",
                     "My name is Alice."]
    mode = next(m for m in memories if "light mode" in m["fact"])
    assert mode["metadata"]["job_id"] == job["id"] and mode["metadata"]["source_event_ids"] == ["event-15"]
    revisions = (await client.get(f"/v1/memories/{mode['id']}/revisions", headers=tenant.headers)).json()["items"]
    assert sorted((r["revision_number"], r["fact"]) for r in revisions) == [
        (1, "I prefer dark mode interfaces."), (2, "I now prefer light mode interfaces."),
    ]

    events = (await client.get(f"/v1/jobs/{job['id']}/events", headers=tenant.headers)).json()["items"]
    assert len(events) == 20
    extracted = [e["event_id"] for e in events if e["status"] == "extracted"]
    assert extracted == ["event-1", "event-3", "event-5", "event-9", "event-15"]
    assert events[1]["status"] == "skipped" and events[1]["reason"] == "not authored by the user"
    assert events[6]["status"] == "skipped" and events[6]["reason"] == "no memorable statement"
    assert "UPDATE" in events[14]["reason"] and events[14]["memory_ids"] == [mode["id"]]


async def test_offline_can_be_forced_with_an_llm_configured(
    llm_client: tuple[httpx.AsyncClient, Tenant], llm: FakeOpenAI
) -> None:
    client, tenant = llm_client
    body = events_body(extraction_model="offline")
    response = await client.post("/v1/memories:generate", json=body, headers=tenant.headers)
    assert response.status_code == 200 and response.json()["extractor"] == "offline"
    assert llm.calls == []


async def test_an_llm_that_refuses_the_request_fails_the_job_at_once(
    llm_client: tuple[httpx.AsyncClient, Tenant], llm: FakeOpenAI
) -> None:
    client, tenant = llm_client
    llm.status = 401
    response = await client.post("/v1/memories:generate", json=events_body(), headers=tenant.headers)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "failed" and job["attempts"] == 1 and "HTTP 401" in job["error_message"]
    assert len(llm.calls) == 1
    events = (await client.get(f"/v1/jobs/{job['id']}/events", headers=tenant.headers)).json()["items"]
    assert len(events) == 20 and {e["status"] for e in events} == {"failed"}
    assert "HTTP 401" in events[0]["reason"]
