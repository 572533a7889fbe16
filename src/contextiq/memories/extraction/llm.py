"""Extraction and consolidation by an LLM behind any OpenAI-compatible chat-completions endpoint.

:class:`ChatClient` speaks ``POST {base_url}/chat/completions`` (OpenAI, vLLM, Ollama, llama.cpp
server, LiteLLM, ...) and asks for JSON constrained by a strict JSON schema. :class:`LLMExtractor`
turns all of a job's events into candidate facts with ONE call; :class:`LLMConsolidator` decides
CREATE / UPDATE / DELETE / SKIP for all candidates that have stored neighbours with ONE call, so a
generation job costs at most two model calls (plus at most one repair call each when the model's
JSON is unusable) whatever the number of events or facts.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import anyio
import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from contextiq.core.llm.http import RETRY_STATUSES, excerpt, retry_delay

from .base import Consolidator, Extractor
from .types import Action, ActionKind, Candidate, EventOutcome, Existing, ExtractionResult, SourceEvent, Topic

__all__ = [
    "USAGE_KEYS",
    "ChatClient",
    "LLMConsolidator",
    "LLMError",
    "LLMExtractor",
    "empty_usage",
]

log = logging.getLogger(__name__)

PydanticModel = TypeVar("PydanticModel", bound=BaseModel)

#: The token-usage counters every usage dict carries (``calls`` counts completed model calls).
USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens", "calls")
#: Longest fact the prompts ask for (the store refuses longer ones).
MAX_FACT_CHARS = 2000

_KINDS: frozenset[str] = frozenset({"CREATE", "UPDATE", "DELETE", "SKIP"})
_NO_NEIGHBOURS = "no similar memory"
_NO_DECISION = "model gave no valid decision"
_FENCE = re.compile(r"^```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?\s*```$", re.DOTALL)
_THINK = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL)


def empty_usage() -> dict[str, int]:
    """Return a usage dict with every counter at zero."""
    return dict.fromkeys(USAGE_KEYS, 0)


def _add_usage(total: dict[str, int], part: Mapping[str, int]) -> None:
    for key, value in part.items():
        total[key] = total.get(key, 0) + value


class LLMError(Exception):
    """A chat-completion call failed: an HTTP error, a malformed response or unusable model output.

    ``status_code`` is the HTTP status when the endpoint answered with an error, and ``usage``
    the tokens spent by the calls that did complete before the failure.
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, usage: Mapping[str, int] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.usage: dict[str, int] = dict(usage) if usage is not None else empty_usage()


class _InvalidOutput(Exception):
    """The model's reply is not JSON or does not match the expected shape."""


class ChatClient:
    """JSON completions from an OpenAI-compatible ``POST {base_url}/chat/completions`` endpoint.

    Each request carries ``response_format={"type": "json_schema", "json_schema": {"name": ...,
    "schema": ..., "strict": true}}``. HTTP 408, 429 and 5xx, connection errors and timeouts are
    retried up to ``max_retries`` times, waiting ``backoff * 2**(retry - 1)`` seconds (a little
    jitter added) or the server's ``Retry-After`` (at most 30 s). Any other failure raises
    :class:`LLMError` naming the status and quoting the first 200 characters of the body.

    Unless ``http_client`` is given (the caller then owns and closes it), every
    :meth:`complete_json` call opens and closes its own connection pool, so an unclosed
    ``ChatClient`` leaks nothing; :meth:`aclose` is still provided for symmetry.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        model: str,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        if not base_url:
            raise ValueError("base_url is required")
        if not model:
            raise ValueError("model is required")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if backoff < 0:
            raise ValueError(f"backoff must be >= 0, got {backoff}")
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._http_client = http_client
        self._closed = False

    def __repr__(self) -> str:
        return f"ChatClient(url={self.url!r}, model={self.model!r})"

    async def complete_json(
        self,
        *,
        messages: list[dict[str, str]],
        schema_name: str,
        schema: dict[str, object],
        model_type: type[PydanticModel],
        temperature: float = 0.0,
        max_tokens: int = 4000,
    ) -> tuple[PydanticModel, dict[str, int]]:
        """Ask for JSON matching ``schema``, validate it as ``model_type`` and return it with the usage.

        A reply that is not JSON or fails validation gets exactly one repair call: the bad reply is
        sent back as an assistant message followed by a user message quoting the problem. The
        usage is summed over all completed calls (``calls`` is 1, or 2 after a repair).

        Raises:
            LLMError: The endpoint failed (after retries for transient failures), answered with a
                malformed body, refused, or the repaired reply was still unusable.
        """
        if self._closed:
            raise LLMError(f"{self!r} is closed")
        conversation = [dict(m) for m in messages]
        usage = empty_usage()
        repaired = False
        try:
            async with self._session() as http:
                while True:
                    content, call_usage = await self._complete(
                        http, conversation, schema_name, schema, temperature, max_tokens
                    )
                    _add_usage(usage, call_usage)
                    try:
                        return _decode(content, model_type), usage
                    except _InvalidOutput as problem:
                        if repaired:
                            raise LLMError(
                                f"model {self.model!r} gave unusable {schema_name} output even after "
                                f"one repair attempt: {problem}"
                            ) from None
                        repaired = True
                        log.info("repairing %s output from model %r: %s", schema_name, self.model, problem)
                        conversation.append({"role": "assistant", "content": content})
                        conversation.append({"role": "user", "content": _repair_prompt(problem, schema)})
        except LLMError as exc:
            _add_usage(exc.usage, usage)
            raise

    async def aclose(self) -> None:
        """Stop this client from making further calls (a caller-supplied ``http_client`` stays open)."""
        self._closed = True

    # -- internals -----------------------------------------------------------------------

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._http_client is not None:
            yield self._http_client
            return
        async with httpx.AsyncClient(timeout=self.timeout) as http:
            yield http

    async def _complete(
        self,
        http: httpx.AsyncClient,
        messages: list[dict[str, str]],
        schema_name: str,
        schema: dict[str, object],
        temperature: float,
        max_tokens: int,
    ) -> tuple[str, dict[str, int]]:
        body: dict[str, object] = {
            "model": self.model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": schema, "strict": True},
            },
        }
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            last = attempt == attempts
            try:
                response = await http.post(self.url, json=body, headers=self._headers, timeout=self.timeout)
            except httpx.TransportError as exc:
                if last:
                    raise LLMError(
                        f"chat completion request to {self.url} failed after {attempt} attempt(s): "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                await anyio.sleep(retry_delay(attempt, None, backoff=self.backoff))
                continue
            if 200 <= response.status_code < 300:
                return self._read(response)
            if response.status_code in RETRY_STATUSES and not last:
                await anyio.sleep(retry_delay(attempt, response.headers.get("retry-after"), backoff=self.backoff))
                continue
            raise LLMError(
                f"chat completion request to {self.url} failed with HTTP {response.status_code} "
                f"after {attempt} attempt(s): {excerpt(response, 200)}",
                status_code=response.status_code,
            )
        raise AssertionError("unreachable")  # pragma: no cover


    def _read(self, response: httpx.Response) -> tuple[str, dict[str, int]]:
        try:
            payload: Any = response.json()
        except ValueError as exc:
            raise LLMError(
                f"chat completion response from {self.url} is not JSON: {excerpt(response, 200)}"
            ) from exc
        choices = payload.get("choices") if isinstance(payload, dict) else None
        first = choices[0] if isinstance(choices, list) and choices else None
        message = first.get("message") if isinstance(first, dict) else None
        if not isinstance(message, dict):
            raise LLMError(
                f"chat completion response from {self.url} has no choices[0].message: {excerpt(response, 200)}"
            )
        usage = empty_usage()
        usage["calls"] = 1
        raw = payload.get("usage")
        if isinstance(raw, dict):
            for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
                value = raw.get(key)
                if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                    usage[key] = value
            if not usage["total_tokens"]:
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        content = message.get("content")
        if isinstance(content, list):  # content parts, as some servers send
            content = "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
        if not isinstance(content, str) or not content.strip():
            refusal = message.get("refusal")
            if isinstance(refusal, str) and refusal.strip():
                raise LLMError(
                    f"model {self.model!r} refused: {refusal.strip()[:200]}", usage=usage
                )
            content = ""
        return content, usage



def _decode(content: str, model_type: type[PydanticModel]) -> PydanticModel:
    text = _THINK.sub("", content.strip(), count=1).strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    if not text:
        raise _InvalidOutput("the reply is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _InvalidOutput(
            f"the reply is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    try:
        return model_type.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in error['loc']) or '(root)'}: {error['msg']}"
            for error in exc.errors(include_url=False)[:10]
        ]
        raise _InvalidOutput(f"the JSON does not match the schema: {'; '.join(problems)}") from None


def _repair_prompt(problem: _InvalidOutput, schema: Mapping[str, object]) -> str:
    return (
        f"Your previous reply could not be used: {problem}.\n"
        "Reply again with the corrected JSON only (no prose, no code fences), matching this JSON schema "
        f"exactly:\n{json.dumps(schema, ensure_ascii=False)}"
    )


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


# -- extraction ------------------------------------------------------------------------------


class _Fact(BaseModel):
    model_config = ConfigDict(extra="ignore")

    fact: str
    topic: str
    confidence: float
    source_events: list[int]
    subject: str | None = None
    is_retraction: bool = False


class _Facts(BaseModel):
    model_config = ConfigDict(extra="ignore")

    facts: list[_Fact]


def _facts_schema(labels: Sequence[str]) -> dict[str, object]:
    return {
        "type": "object",
        "properties": {
            "facts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "fact": {"type": "string"},
                        "topic": {"type": "string", "enum": list(labels)},
                        "confidence": {"type": "number"},
                        "source_events": {"type": "array", "items": {"type": "integer"}},
                        "subject": {"type": ["string", "null"]},
                        "is_retraction": {"type": "boolean"},
                    },
                    "required": ["fact", "topic", "confidence", "source_events", "subject", "is_retraction"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["facts"],
        "additionalProperties": False,
    }


_EXTRACTION_SYSTEM = """\
You extract long-term memories about a user from a conversation between the user and an AI agent.
Memories are kept across conversations so the agent can personalise later answers.

Rules:
- Extract only information that belongs to one of the listed topics; "topic" must be exactly one of \
their labels.
- Write each fact in the first person from the user's perspective ("I prefer dark mode", "My sister \
Anna lives in Lyon"), never "the user ...".
- Each fact must stand alone: resolve pronouns and references, turn relative dates into absolute ones \
using the event timestamps, and include the context needed to understand it later. At most \
{max_chars} characters, in the language the user wrote in.
- Use what the user said. Agent, tool and system events are context only: never attribute their \
claims or suggestions to the user unless the user confirmed them.
- "source_events": the numbers ("n") of the events the fact is based on, including any agent event \
whose question the user's answer depends on.
- "confidence": 0 to 1; 1 for an explicit statement, lower for something implied or uncertain.
- "subject": a short normalised slot "<kind>:<attribute>" in lower case, for example \
"preference:ui mode", "personal:location", "personal:sister name", "instruction:response language", \
"plan:trip to japan". Facts about the same thing get the same subject, so a newer one can replace an \
older one. Use null when no slot fits.
- "is_retraction": true when the user asks to forget something or says a remembered fact should no \
longer be kept ("forget that I ...", "don't remember my ..."); the fact is then what should be \
forgotten, in the first person ("I live in Paris"). Otherwise false.
- Do not invent facts, do not repeat a fact, skip small talk and one-off requests with no lasting \
value. Return at most {max_facts} facts; return {{"facts": []}} when nothing is worth remembering.
- Reply with JSON only: {{"facts": [{{"fact": ..., "topic": ..., "confidence": ..., \
"source_events": [...], "subject": ..., "is_retraction": ...}}]}}."""


def _render_example(number: int, example: Mapping[str, object]) -> str:
    conversation = example.get("conversation", "")
    facts = example.get("facts", [])
    shown = conversation if isinstance(conversation, str) else _json(conversation)
    return f"Example {number}\nConversation:\n{shown}\nFacts:\n{_json(facts)}"


def _extraction_prompt(
    events: Sequence[SourceEvent],
    topics: Sequence[Topic],
    examples: Sequence[Mapping[str, object]],
    max_facts: int,
) -> list[dict[str, str]]:
    parts = ["Topics (label: what belongs to it):"]
    parts += [f"- {t.label}: {t.description.strip()}" for t in topics]
    if examples:
        parts.append(
            "\nExamples of conversations and the facts to extract from them (do not extract facts "
            "from the examples themselves):"
        )
        parts += [_render_example(i, example) for i, example in enumerate(examples, 1)]
    parts.append(
        f'\nConversation: {len(events)} events, one JSON object per line, numbered by "n", with the '
        "author and the time (ISO 8601, null when unknown):"
    )
    for number, event in enumerate(events, 1):
        stamp = event.timestamp.isoformat() if event.timestamp is not None else None
        parts.append(_json({"n": number, "author": event.author, "time": stamp, "text": event.text}))
    parts.append("\nExtract the facts worth remembering about the user as JSON.")
    system = _EXTRACTION_SYSTEM.format(max_chars=MAX_FACT_CHARS, max_facts=max_facts)
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(parts)}]


def _normal_subject(subject: str | None) -> str | None:
    if subject is None:
        return None
    text = " ".join(subject.split()).lower()
    text = re.sub(r"\s*:\s*", ":", text)
    return text or None


def _is_user(event: SourceEvent) -> bool:
    return event.author.strip().lower() == "user"


class LLMExtractor(Extractor):
    """Extract candidate facts from all of a job's events with one chat-completion call.

    ``last_usage`` holds the token usage of the latest :meth:`extract` (also returned as
    ``ExtractionResult.usage``, with ``dropped_facts`` counting the model's facts that were
    unusable: unknown topic, event numbers out of range, empty, or over ``max_facts``); ``usage``
    accumulates over the extractor's lifetime. ``temperature`` and ``max_tokens`` go to the model.
    """

    def __init__(
        self, client: ChatClient, *, max_facts: int = 50, temperature: float = 0.0, max_tokens: int = 4000
    ) -> None:
        if max_facts < 1:
            raise ValueError(f"max_facts must be >= 1, got {max_facts}")
        self.client = client
        self.max_facts = max_facts
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.last_usage: dict[str, int] = empty_usage()
        self.usage: dict[str, int] = empty_usage()

    async def extract(
        self,
        *,
        events: Sequence[SourceEvent],
        topics: Sequence[Topic],
        examples: Sequence[Mapping[str, object]] = (),
    ) -> ExtractionResult:
        """Extract candidate facts for ``topics`` and report one outcome per event (one model call)."""
        events = list(events)
        self.last_usage = empty_usage()
        if not events:
            return ExtractionResult(usage=empty_usage())
        if not topics:
            outcomes = [EventOutcome(e.id, "skipped", "no memory topics to extract") for e in events]
            return ExtractionResult(outcomes=outcomes, usage=empty_usage())
        labels = list(dict.fromkeys(t.label for t in topics))
        try:
            reply, usage = await self.client.complete_json(
                messages=_extraction_prompt(events, topics, examples, self.max_facts),
                schema_name="memory_facts",
                schema=_facts_schema(labels),
                model_type=_Facts,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
            )
        except LLMError as exc:
            self.last_usage = dict(exc.usage)
            _add_usage(self.usage, exc.usage)
            raise
        candidates, notes, dropped = self._candidates(reply.facts, events, labels)
        usage["dropped_facts"] = dropped
        self.last_usage = dict(usage)
        _add_usage(self.usage, usage)
        return ExtractionResult(
            candidates=candidates, outcomes=_outcomes(events, candidates, notes), usage=usage
        )

    def _candidates(
        self, facts: Sequence[_Fact], events: Sequence[SourceEvent], labels: Sequence[str]
    ) -> tuple[list[Candidate], dict[int, list[str]], int]:
        """Map the model's facts to candidates; return them, drop notes per event number, drop count."""
        by_label = {label.casefold(): label for label in labels}
        notes: dict[int, list[str]] = {}
        dropped = 0

        def drop(numbers: Sequence[int], why: str) -> None:
            nonlocal dropped
            dropped += 1
            for number in numbers:
                if 1 <= number <= len(events):
                    notes.setdefault(number, []).append(why)

        kept: list[tuple[_Fact, str, str, list[int]]] = []  # (raw, fact, topic, event numbers)
        seen: dict[tuple[str, str, bool], int] = {}
        for item in facts:
            fact = item.fact.strip()
            numbers = sorted(set(item.source_events))
            topic = by_label.get(item.topic.strip().casefold())
            outside = [n for n in numbers if not 1 <= n <= len(events)]
            if not fact:
                drop(numbers, "an empty fact was dropped")
            elif topic is None:
                drop(numbers, f"a fact with the unknown topic {item.topic!r} was dropped")
            elif not numbers:
                drop(numbers, "a fact citing no event was dropped")
            elif outside:
                drop(numbers, f"a fact citing event numbers outside 1..{len(events)} ({outside}) was dropped")
            elif not math.isfinite(item.confidence):
                drop(numbers, "a fact with a non-numeric confidence was dropped")
            else:
                key = (fact.casefold(), topic, item.is_retraction)
                if key in seen:  # the same fact twice: merge its sources
                    position = seen[key]
                    raw, text, label, merged = kept[position]
                    best = raw if raw.confidence >= item.confidence else item
                    kept[position] = (best, text, label, sorted(set(merged) | set(numbers)))
                else:
                    seen[key] = len(kept)
                    kept.append((item, fact, topic, numbers))
        if len(kept) > self.max_facts:
            order = sorted(range(len(kept)), key=lambda i: -kept[i][0].confidence)
            chosen = set(order[: self.max_facts])
            for index in order[self.max_facts :]:
                drop(kept[index][3], f"a fact over the limit of {self.max_facts} facts was dropped")
            kept = [entry for i, entry in enumerate(kept) if i in chosen]
        candidates = []
        for raw, fact, topic, numbers in kept:
            cited = [events[n - 1] for n in numbers]
            stamps = [e.timestamp for e in cited if e.timestamp is not None]
            candidates.append(
                Candidate(
                    fact=fact,
                    topic=topic,
                    confidence=min(max(raw.confidence, 0.0), 1.0),
                    source_event_ids=tuple(dict.fromkeys(e.id for e in cited)),
                    event_time=_latest(stamps),
                    subject=_normal_subject(raw.subject),
                    is_retraction=raw.is_retraction,
                )
            )
        return candidates, notes, dropped


def _latest(stamps: Sequence[datetime]) -> datetime | None:
    if not stamps:
        return None
    try:
        return max(stamps)
    except TypeError:  # naive and aware timestamps mixed: keep the last one cited
        return stamps[-1]


def _outcomes(
    events: Sequence[SourceEvent], candidates: Sequence[Candidate], notes: Mapping[int, Sequence[str]]
) -> list[EventOutcome]:
    counts: dict[str, int] = {}
    for candidate in candidates:
        for event_id in candidate.source_event_ids:
            counts[event_id] = counts.get(event_id, 0) + 1
    outcomes = []
    for number, event in enumerate(events, 1):
        count = counts.get(event.id, 0)
        note = "; ".join(dict.fromkeys(notes.get(number, ())))
        if count:
            outcomes.append(EventOutcome(event.id, "extracted", note or None, count))
        else:
            base = "no memorable statement" if _is_user(event) else "not authored by the user"
            outcomes.append(EventOutcome(event.id, "skipped", f"{base}; {note}" if note else base))
    return outcomes


# -- consolidation ---------------------------------------------------------------------------


class _Decision(BaseModel):
    model_config = ConfigDict(extra="ignore")

    candidate: int
    action: str
    target: str | None = None
    fact: str | None = None
    reason: str = ""


class _Decisions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    decisions: list[_Decision]


_DECISIONS_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {
        "decisions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "candidate": {"type": "integer"},
                    "action": {"type": "string", "enum": ["CREATE", "UPDATE", "DELETE", "SKIP"]},
                    "target": {"type": ["string", "null"]},
                    "fact": {"type": ["string", "null"]},
                    "reason": {"type": "string"},
                },
                "required": ["candidate", "action", "target", "fact", "reason"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["decisions"],
    "additionalProperties": False,
}

_CONSOLIDATION_SYSTEM = f"""\
You keep a user's long-term memory consistent. Each new candidate fact comes with the most similar \
memories already stored, each under a short reference such as "M1". Decide, for every candidate, \
exactly one action:
- CREATE: the candidate is new information that no listed memory covers. target null, fact null.
- UPDATE: the candidate refines, extends, corrects or supersedes a listed memory about the same thing \
(same subject, e.g. a changed preference or a new address). target = that memory's reference; fact = \
one merged standalone fact in the first person that keeps what is still true and states the newest \
information (at most {MAX_FACT_CHARS} characters).
- DELETE: the candidate is a request to forget (is_retraction true) a listed memory, or makes it \
wrong with nothing left to keep. target = that memory's reference; fact null.
- SKIP: the candidate adds nothing (a listed memory already says it), or it is a request to forget \
something no listed memory holds. target = the reference of the memory that already says it, or null; \
fact null.
Rules: use only references listed under that candidate; give one decision per candidate, each \
candidate exactly once, identified by its "candidate" number; "reason" is one short sentence for \
people. Reply with JSON only: {{"decisions": [{{"candidate": ..., "action": ..., "target": ..., \
"fact": ..., "reason": ...}}]}}."""


class LLMConsolidator(Consolidator):
    """Reconcile candidates with their stored neighbours in one chat-completion call.

    Candidates without neighbours become CREATE ("no similar memory") without asking the model (a
    retraction with nothing to forget becomes SKIP); when none has neighbours no call is made.
    Stored memory ids are shown to the model as short references (``M1``, ``M2``, ...) and mapped
    back; a decision that is missing, names an unknown reference or lacks a needed target falls
    back to CREATE (SKIP for a retraction) with the reason "model gave no valid decision".
    ``last_usage`` holds the latest call's token usage, ``usage`` the total over the lifetime.
    """

    def __init__(self, client: ChatClient, *, temperature: float = 0.0, max_tokens: int = 4000) -> None:
        self.client = client
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.last_usage: dict[str, int] = empty_usage()
        self.usage: dict[str, int] = empty_usage()

    async def consolidate(
        self,
        *,
        candidates: Sequence[Candidate],
        neighbours: Mapping[int, Sequence[Existing]],
    ) -> list[Action]:
        """Return exactly one action per candidate, in candidate order (at most one model call)."""
        self.last_usage = empty_usage()
        actions: list[Action | None] = [None] * len(candidates)
        asked: list[tuple[int, list[Existing]]] = []
        for index, candidate in enumerate(candidates):
            near = list(neighbours.get(index, ()))
            if near:
                asked.append((index, near))
            else:
                actions[index] = _fallback(candidate, _NO_NEIGHBOURS)
        if asked:
            refs: dict[str, str] = {}  # stored id -> local reference
            for _, near in asked:
                for existing in near:
                    refs.setdefault(existing.id, f"M{len(refs) + 1}")
            try:
                reply, usage = await self.client.complete_json(
                    messages=_consolidation_prompt(candidates, asked, refs),
                    schema_name="memory_decisions",
                    schema=_DECISIONS_SCHEMA,
                    model_type=_Decisions,
                    temperature=self.temperature,
                    max_tokens=self.max_tokens,
                )
            except LLMError as exc:
                self.last_usage = dict(exc.usage)
                _add_usage(self.usage, exc.usage)
                raise
            self.last_usage = dict(usage)
            _add_usage(self.usage, usage)
            decisions: dict[int, _Decision] = {}
            for decision in reply.decisions:
                decisions.setdefault(decision.candidate, decision)
            for number, (index, near) in enumerate(asked, 1):
                allowed = {refs[e.id]: e.id for e in near}
                actions[index] = _decide(candidates[index], decisions.get(number), allowed)
        return [a for a in actions if a is not None]


def _consolidation_prompt(
    candidates: Sequence[Candidate], asked: Sequence[tuple[int, Sequence[Existing]]], refs: Mapping[str, str]
) -> list[dict[str, str]]:
    lines = [
        f"{len(asked)} candidate(s), one JSON object per line, each with its similar stored memories "
        "(similarity is cosine, 1 = identical meaning):"
    ]
    for number, (index, near) in enumerate(asked, 1):
        candidate = candidates[index]
        memories = [
            {
                "ref": refs[e.id],
                "fact": e.fact,
                "topic": e.topic,
                "subject": e.subject,
                "similarity": round(e.similarity, 3),
            }
            for e in near
        ]
        lines.append(
            _json(
                {
                    "candidate": number,
                    "fact": candidate.fact,
                    "topic": candidate.topic,
                    "subject": candidate.subject,
                    "is_retraction": candidate.is_retraction,
                    "memories": memories,
                }
            )
        )
    lines.append("\nDecide one action per candidate as JSON.")
    return [
        {"role": "system", "content": _CONSOLIDATION_SYSTEM},
        {"role": "user", "content": "\n".join(lines)},
    ]


def _fallback(candidate: Candidate, reason: str) -> Action:
    if candidate.is_retraction:  # a request to forget is never stored as a memory
        return Action(kind="SKIP", candidate=candidate, target_id=None, fact=None, reason=reason)
    return Action(kind="CREATE", candidate=candidate, target_id=None, fact=candidate.fact, reason=reason)


def _decide(candidate: Candidate, decision: _Decision | None, allowed: Mapping[str, str]) -> Action:
    if decision is None:
        log.warning("consolidation: the model gave no decision for candidate %r", candidate.fact[:80])
        return _fallback(candidate, _NO_DECISION)
    kind = decision.action.strip().upper()
    ref = (decision.target or "").strip().upper()
    if ref in {"", "NULL", "NONE"}:
        ref = ""
    if kind not in _KINDS or (ref and ref not in allowed) or (kind in {"UPDATE", "DELETE"} and not ref):
        log.warning(
            "consolidation: invalid decision %s target=%r for candidate %r",
            kind,
            decision.target,
            candidate.fact[:80],
        )
        return _fallback(candidate, _NO_DECISION)
    target = allowed[ref] if ref else None
    reason = " ".join(decision.reason.split())[:500] or f"the model chose {kind}"
    action_kind: ActionKind
    if kind == "CREATE":
        if candidate.is_retraction:
            return Action(
                kind="SKIP",
                candidate=candidate,
                target_id=None,
                fact=None,
                reason=f"{reason} (a request to forget is not stored as a memory)",
            )
        return Action(kind="CREATE", candidate=candidate, target_id=None, fact=candidate.fact, reason=reason)
    if kind == "UPDATE":
        merged = (decision.fact or "").strip() or candidate.fact
        return Action(kind="UPDATE", candidate=candidate, target_id=target, fact=merged, reason=reason)
    action_kind = "DELETE" if kind == "DELETE" else "SKIP"
    return Action(kind=action_kind, candidate=candidate, target_id=target, fact=None, reason=reason)
