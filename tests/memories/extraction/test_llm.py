"""LLM extraction and consolidation against a real local OpenAI-compatible HTTP server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from contextiq.memories.extraction.llm import ChatClient, LLMConsolidator, LLMError, LLMExtractor
from contextiq.memories.extraction.types import (
    KEY_CONVERSATION_DETAILS,
    USER_PERSONAL_INFO,
    USER_PREFERENCES,
    Candidate,
    Existing,
    SourceEvent,
    Topic,
    managed_topics,
)

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


@dataclass
class Reply:
    """One scripted HTTP answer."""

    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeOpenAI:
    """A scripted OpenAI chat-completions server; records every request."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with owner._lock:
                    owner.requests.append(
                        Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw))
                    )
                    reply = owner.script.pop(0) if owner.script else Reply(599, "script exhausted")
                data = reply.body.encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    def answer(self, payload: object, *, prompt: int = 100, completion: int = 20) -> None:
        """Queue a successful completion whose content is ``payload`` (JSON-encoded unless a str)."""
        content = payload if isinstance(payload, str) else json.dumps(payload)
        body = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": "test-model",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }
        self.script.append(Reply(200, json.dumps(body)))

    def fail(self, status: int, body: str = '{"error": {"message": "boom"}}', **headers: str) -> None:
        """Queue an HTTP error answer."""
        self.script.append(Reply(status, body, headers))

    def user_prompt(self, index: int = 0) -> str:
        messages = self.requests[index].body["messages"]
        return str(next(m["content"] for m in messages if m["role"] == "user"))


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.httpd.shutdown()
        fake.httpd.server_close()
        fake.thread.join(timeout=5)


def client_for(server: FakeOpenAI, **options: Any) -> ChatClient:
    settings: dict[str, Any] = {"api_key": "sk-test", "model": "test-model", "backoff": 0.001}
    settings.update(options)
    return ChatClient(base_url=server.url, **settings)


def conversation(count: int = 20) -> list[SourceEvent]:
    """Alternate user and agent events, one minute apart."""
    return [
        SourceEvent(
            id=f"e{n}",
            author="user" if n % 2 else "agent",
            text=f"message {n}",
            timestamp=T0 + timedelta(minutes=n),
        )
        for n in range(1, count + 1)
    ]


def fact(text: str, topic: str, events: list[int], **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "fact": text,
        "topic": topic,
        "confidence": 0.9,
        "source_events": events,
        "subject": None,
        "is_retraction": False,
    }
    item.update(extra)
    return item


def candidate(text: str, *, retraction: bool = False) -> Candidate:
    return Candidate(
        fact=text, topic=USER_PREFERENCES, confidence=0.9, source_event_ids=("e1",), is_retraction=retraction
    )


def existing(memory_id: str, text: str, similarity: float = 0.9) -> Existing:
    return Existing(id=memory_id, fact=text, topic=USER_PREFERENCES, subject=None, similarity=similarity)


# -- one call each ---------------------------------------------------------------------------


async def test_twenty_events_cost_one_extraction_call_and_one_consolidation_call(server: FakeOpenAI) -> None:
    events = conversation(20)
    server.answer(
        {
            "facts": [
                fact("I prefer dark mode", USER_PREFERENCES, [1], subject="Preference : UI  Mode"),
                fact("I live in Lyon", USER_PERSONAL_INFO, [3, 4]),
                fact("I have a dentist appointment on 2025-03-04", KEY_CONVERSATION_DETAILS, [19]),
            ]
        }
    )
    client = client_for(server)
    result = await LLMExtractor(client).extract(events=events, topics=managed_topics())

    assert [c.fact for c in result.candidates] == [
        "I prefer dark mode",
        "I live in Lyon",
        "I have a dentist appointment on 2025-03-04",
    ]
    assert result.candidates[0].subject == "preference:ui mode"
    assert result.candidates[1].source_event_ids == ("e3", "e4")
    assert result.candidates[1].event_time == T0 + timedelta(minutes=4)
    assert len(result.outcomes) == 20
    assert result.usage == {
        "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120, "calls": 1, "dropped_facts": 0
    }

    neighbours = {
        0: [existing("mem-light", "I prefer light mode", 0.8)],
        1: [existing("mem-paris", "I live in Paris", 0.7)],
    }
    server.answer(
        {
            "decisions": [
                {"candidate": 1, "action": "UPDATE", "target": "M1", "fact": "I prefer dark mode",
                 "reason": "the preference changed"},
                {"candidate": 2, "action": "UPDATE", "target": "M2", "fact": "I live in Lyon (moved from Paris)",
                 "reason": "moved"},
            ]
        },
        prompt=50,
        completion=10,
    )
    consolidator = LLMConsolidator(client)
    actions = await consolidator.consolidate(candidates=result.candidates, neighbours=neighbours)

    assert len(server.requests) == 2
    assert all(r.path == "/v1/chat/completions" for r in server.requests)
    assert [(a.kind, a.target_id, a.fact) for a in actions] == [
        ("UPDATE", "mem-light", "I prefer dark mode"),
        ("UPDATE", "mem-paris", "I live in Lyon (moved from Paris)"),
        ("CREATE", None, "I have a dentist appointment on 2025-03-04"),
    ]
    assert actions[2].reason == "no similar memory"
    assert [a.candidate for a in actions] == result.candidates
    assert consolidator.last_usage == {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60, "calls": 1}
    assert consolidator.usage == consolidator.last_usage
    # The model sees local references only, never the stored ids.
    prompt = server.user_prompt(1)
    assert "mem-light" not in prompt and "mem-paris" not in prompt
    assert '"ref": "M1"' in prompt and '"ref": "M2"' in prompt


async def test_request_uses_a_strict_json_schema_and_the_bearer_key(server: FakeOpenAI) -> None:
    server.answer({"facts": []})
    topics = [Topic(USER_PREFERENCES, "Likes and dislikes."), Topic("PETS", "The user's pets and their names.")]
    examples = [{"conversation": "user: I adore my cat Tom", "facts": [{"fact": "I have a cat named Tom"}]}]
    await LLMExtractor(client_for(server), max_facts=7).extract(
        events=conversation(2), topics=topics, examples=examples
    )

    request = server.requests[0]
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.body["model"] == "test-model"
    assert request.body["temperature"] == 0.0
    response_format = request.body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is True
    assert response_format["json_schema"]["name"] == "memory_facts"
    schema = response_format["json_schema"]["schema"]
    item = schema["properties"]["facts"]["items"]
    assert item["additionalProperties"] is False
    assert set(item["required"]) == set(item["properties"])
    assert item["properties"]["topic"]["enum"] == [USER_PREFERENCES, "PETS"]

    prompt = server.user_prompt()
    assert '{"n": 1, "author": "user", "time": "2025-03-01T09:01:00+00:00", "text": "message 1"}' in prompt
    assert '"n": 2, "author": "agent"' in prompt
    assert "- PETS: The user's pets and their names." in prompt
    assert "I adore my cat Tom" in prompt and "I have a cat named Tom" in prompt
    system = request.body["messages"][0]["content"]
    assert "first person" in system and "at most 7 facts" in system


async def test_no_authorization_header_without_a_key(server: FakeOpenAI) -> None:
    server.answer({"facts": []})
    await LLMExtractor(client_for(server, api_key=None)).extract(events=conversation(1), topics=managed_topics())
    assert "authorization" not in server.requests[0].headers


async def test_no_events_means_no_call(server: FakeOpenAI) -> None:
    extractor = LLMExtractor(client_for(server))
    result = await extractor.extract(events=[], topics=managed_topics())
    assert result.candidates == [] and result.outcomes == []
    assert result.usage["calls"] == 0
    assert server.requests == []


# -- per-event outcomes ----------------------------------------------------------------------


async def test_source_events_map_to_per_event_outcomes(server: FakeOpenAI) -> None:
    events = [
        SourceEvent("u1", "user", "Call me Sam.", T0),
        SourceEvent("a2", "agent", "Which city do you live in?", T0 + timedelta(minutes=1)),
        SourceEvent("u3", "user", "Lyon.", T0 + timedelta(minutes=2)),
        SourceEvent("u4", "user", "Thanks!", T0 + timedelta(minutes=3)),
        SourceEvent("a5", "agent", "You're welcome.", T0 + timedelta(minutes=4)),
        SourceEvent("t6", "tool", '{"weather": "sunny"}', None),
    ]
    server.answer(
        {
            "facts": [
                fact("My name is Sam", USER_PERSONAL_INFO, [1], subject="personal:name"),
                fact("I live in Lyon", USER_PERSONAL_INFO, [2, 3], confidence=1.5),
                fact("I like Lyon", USER_PREFERENCES, [3], confidence=0.4),
            ]
        }
    )
    result = await LLMExtractor(client_for(server)).extract(events=events, topics=managed_topics())

    outcomes = {o.event_id: o for o in result.outcomes}
    assert [o.event_id for o in result.outcomes] == ["u1", "a2", "u3", "u4", "a5", "t6"]
    assert (outcomes["u1"].status, outcomes["u1"].candidate_count) == ("extracted", 1)
    assert (outcomes["a2"].status, outcomes["a2"].candidate_count) == ("extracted", 1)  # cited by a fact
    assert (outcomes["u3"].status, outcomes["u3"].candidate_count) == ("extracted", 2)
    assert (outcomes["u4"].status, outcomes["u4"].reason) == ("skipped", "no memorable statement")
    assert (outcomes["a5"].status, outcomes["a5"].reason) == ("skipped", "not authored by the user")
    assert (outcomes["t6"].status, outcomes["t6"].reason) == ("skipped", "not authored by the user")
    lyon = result.candidates[1]
    assert lyon.source_event_ids == ("a2", "u3")
    assert lyon.confidence == 1.0  # clamped
    assert lyon.event_time == T0 + timedelta(minutes=2)


async def test_unknown_topics_and_bad_event_numbers_are_dropped(server: FakeOpenAI) -> None:
    server.answer(
        {
            "facts": [
                fact("I love sushi", "FAVOURITE_FOOD", [1]),
                fact("I am vegetarian", USER_PERSONAL_INFO, [1, 9]),
                fact("I work at Acme", USER_PERSONAL_INFO, []),
                fact("I use vim", "user_preferences", [3]),  # case-insensitive label match
            ]
        }
    )
    result = await LLMExtractor(client_for(server)).extract(events=conversation(3), topics=managed_topics())

    assert [(c.fact, c.topic) for c in result.candidates] == [("I use vim", USER_PREFERENCES)]
    assert result.usage["dropped_facts"] == 3
    first = result.outcomes[0]
    assert first.status == "skipped"
    assert first.reason is not None
    assert first.reason.startswith("no memorable statement; ")
    assert "unknown topic 'FAVOURITE_FOOD'" in first.reason
    assert "outside 1..3" in first.reason


async def test_facts_over_max_facts_keep_the_most_confident(server: FakeOpenAI) -> None:
    server.answer(
        {
            "facts": [
                fact("I like tea", USER_PREFERENCES, [1], confidence=0.5),
                fact("I like jazz", USER_PREFERENCES, [1], confidence=0.95),
                fact("I like chess", USER_PREFERENCES, [1], confidence=0.7),
            ]
        }
    )
    result = await LLMExtractor(client_for(server), max_facts=2).extract(
        events=conversation(1), topics=managed_topics()
    )
    assert [c.fact for c in result.candidates] == ["I like jazz", "I like chess"]
    assert result.usage["dropped_facts"] == 1


# -- repair and retries ----------------------------------------------------------------------


async def test_invalid_json_gets_one_repair_call_and_usage_is_summed(server: FakeOpenAI) -> None:
    server.answer("Sure! Here are the facts: {facts: oops", prompt=100, completion=20)
    server.answer({"facts": [fact("I prefer tea", USER_PREFERENCES, [1])]}, prompt=130, completion=15)
    extractor = LLMExtractor(client_for(server))
    result = await extractor.extract(events=conversation(1), topics=managed_topics())

    assert [c.fact for c in result.candidates] == ["I prefer tea"]
    assert len(server.requests) == 2
    messages = server.requests[1].body["messages"]
    assert messages[-2] == {"role": "assistant", "content": "Sure! Here are the facts: {facts: oops"}
    assert messages[-1]["role"] == "user"
    assert "not valid JSON" in messages[-1]["content"] and "corrected JSON only" in messages[-1]["content"]
    assert result.usage == {
        "prompt_tokens": 230, "completion_tokens": 35, "total_tokens": 265, "calls": 2, "dropped_facts": 0
    }
    assert extractor.last_usage == result.usage


async def test_schema_mismatch_twice_raises(server: FakeOpenAI) -> None:
    server.answer({"memories": []})
    server.answer({"facts": [{"fact": "I like tea"}]})
    extractor = LLMExtractor(client_for(server))
    with pytest.raises(LLMError, match="after one repair attempt") as caught:
        await extractor.extract(events=conversation(1), topics=managed_topics())
    assert len(server.requests) == 2
    assert "does not match the schema" in server.requests[1].body["messages"][-1]["content"]
    assert caught.value.usage["calls"] == 2
    assert extractor.last_usage["calls"] == 2


async def test_code_fences_are_tolerated(server: FakeOpenAI) -> None:
    server.answer('```json\n{"facts": []}\n```')
    result = await LLMExtractor(client_for(server)).extract(events=conversation(1), topics=managed_topics())
    assert result.candidates == [] and len(server.requests) == 1


async def test_a_500_then_success_is_retried(server: FakeOpenAI) -> None:
    server.fail(500)
    server.fail(429, retry_after="0")
    server.answer({"facts": [fact("I prefer tea", USER_PREFERENCES, [1])]})
    result = await LLMExtractor(client_for(server)).extract(events=conversation(1), topics=managed_topics())
    assert [c.fact for c in result.candidates] == ["I prefer tea"]
    assert len(server.requests) == 3
    assert result.usage["calls"] == 1


async def test_persistent_500_raises_llm_error(server: FakeOpenAI) -> None:
    for _ in range(3):
        server.fail(503, "upstream model overloaded " + "x" * 500)
    with pytest.raises(LLMError) as caught:
        await LLMExtractor(client_for(server, max_retries=2)).extract(
            events=conversation(1), topics=managed_topics()
        )
    message = str(caught.value)
    assert "HTTP 503" in message and "after 3 attempt(s)" in message
    assert "upstream model overloaded" in message
    assert len(message) < 400  # the body is quoted, not dumped
    assert caught.value.status_code == 503
    assert len(server.requests) == 3


async def test_client_errors_are_not_retried(server: FakeOpenAI) -> None:
    server.fail(400, '{"error": {"message": "response_format json_schema is not supported"}}')
    with pytest.raises(LLMError, match=r"HTTP 400 after 1 attempt.*json_schema is not supported"):
        await LLMExtractor(client_for(server)).extract(events=conversation(1), topics=managed_topics())
    assert len(server.requests) == 1


async def test_connection_errors_are_retried_then_raise() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = ChatClient(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=1, backoff=0.001)
    with pytest.raises(LLMError, match="failed after 2 attempt"):
        await LLMExtractor(client).extract(events=conversation(1), topics=managed_topics())


async def test_a_refusal_raises(server: FakeOpenAI) -> None:
    body = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "refusal": "I can't help"}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
    server.script.append(Reply(200, json.dumps(body)))
    with pytest.raises(LLMError, match="refused: I can't help") as caught:
        await LLMExtractor(client_for(server)).extract(events=conversation(1), topics=managed_topics())
    assert caught.value.usage["total_tokens"] == 7


async def test_a_closed_client_refuses_calls(server: FakeOpenAI) -> None:
    client = client_for(server)
    await client.aclose()
    with pytest.raises(LLMError, match="closed"):
        await LLMExtractor(client).extract(events=conversation(1), topics=managed_topics())
    assert server.requests == []


# -- consolidation ---------------------------------------------------------------------------


async def test_consolidation_maps_refs_and_falls_back_on_invalid_decisions(server: FakeOpenAI) -> None:
    candidates = [
        candidate("I prefer dark mode"),  # UPDATE M1
        candidate("I like jazz"),  # unknown ref -> CREATE fallback
        candidate("I drink coffee"),  # no decision -> CREATE fallback
        candidate("I like tea", retraction=True),  # DELETE M3
        candidate("I use vim"),  # SKIP, duplicate of M4
        candidate("I play chess"),  # no neighbours -> CREATE without asking
        candidate("I ski"),  # UPDATE without a target -> fallback
    ]
    neighbours = {
        0: [existing("id-light", "I prefer light mode")],
        1: [existing("id-rock", "I like rock")],
        2: [existing("id-light", "I prefer light mode")],  # shared neighbour keeps its ref
        3: [existing("id-tea", "I like tea")],
        4: [existing("id-vim", "I use vim", 0.99)],
        6: [existing("candidate:0", "I prefer dark mode", 0.2)],
    }
    server.answer(
        {
            "decisions": [
                {"candidate": 1, "action": "UPDATE", "target": "M1", "fact": "I prefer dark mode", "reason": "changed"},
                {"candidate": 2, "action": "UPDATE", "target": "M9", "fact": "x", "reason": "?"},
                {"candidate": 4, "action": "DELETE", "target": "M3", "fact": None, "reason": "asked to forget"},
                {"candidate": 5, "action": "SKIP", "target": "M4", "fact": None, "reason": "already known"},
                {"candidate": 6, "action": "UPDATE", "target": None, "fact": "I ski", "reason": "?"},
            ]
        }
    )
    consolidator = LLMConsolidator(client_for(server))
    actions = await consolidator.consolidate(candidates=candidates, neighbours=neighbours)

    assert len(server.requests) == 1
    assert server.requests[0].body["response_format"]["json_schema"]["strict"] is True
    assert [(a.kind, a.target_id) for a in actions] == [
        ("UPDATE", "id-light"),
        ("CREATE", None),
        ("CREATE", None),
        ("DELETE", "id-tea"),
        ("SKIP", "id-vim"),
        ("CREATE", None),
        ("CREATE", None),
    ]
    assert [a.reason for a in actions] == [
        "changed",
        "model gave no valid decision",
        "model gave no valid decision",
        "asked to forget",
        "already known",
        "no similar memory",
        "model gave no valid decision",
    ]
    assert [a.candidate for a in actions] == candidates
    assert actions[1].fact == "I like jazz"
    prompt = server.user_prompt()
    assert prompt.count('"ref": "M1"') == 2  # id-light shown under candidates 1 and 3 as M1
    assert "id-" not in prompt and "candidate:0" not in prompt
    assert '"ref": "M5"' in prompt and '"I play chess"' not in prompt


async def test_candidates_without_neighbours_make_no_call(server: FakeOpenAI) -> None:
    consolidator = LLMConsolidator(client_for(server))
    candidates = [candidate("I like tea"), candidate("I like jazz", retraction=True)]
    actions = await consolidator.consolidate(candidates=candidates, neighbours={})
    assert server.requests == []
    assert [(a.kind, a.fact, a.reason) for a in actions] == [
        ("CREATE", "I like tea", "no similar memory"),
        ("SKIP", None, "no similar memory"),  # nothing stored to forget
    ]
    assert consolidator.last_usage["calls"] == 0
    assert await consolidator.consolidate(candidates=[], neighbours={}) == []
