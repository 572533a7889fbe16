"""Memory generation: accept a job, run extract → embed → neighbours → consolidate → apply, report.

A job is two rows created in one transaction: the seed's `memory_generation_jobs` row (what to
do, progress, result) and a `jobs` queue row with the same id (who runs it, under which lease).
Workers run `GenerationHandler`. Its last step writes the memories, their revisions, the per-event
records and the job's completion in ONE transaction that first locks the job under its lease and
checks `applied_at`; so a crash before that commit applies nothing (the job is claimed again when
the lease runs out), a crash after it leaves a completed job that is never claimed again, and a
worker that lost its lease cannot commit at all. No window lies between applying and bookkeeping.

Cost is bounded: one extraction call and one consolidation call per job, whatever the number of
events or facts (the LLM steps; the offline ones make no call at all).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import numpy as np
import numpy.typing as npt
from sqlalchemy.ext.asyncio import AsyncSession

from contextiq.core.clock import as_utc, utcnow
from contextiq.core.config import Settings
from contextiq.core.db.engine import Database
from contextiq.core.errors import Conflict, Invalid, NotFound
from contextiq.core.idempotency import run_idempotent
from contextiq.core.ids import new_id
from contextiq.core.jobs import JobContext, JobFailed, JobHandler, JobQueue, JobRow, Worker
from contextiq.core.jobs.worker import default_worker_name
from contextiq.core.llm.embeddings import EmbeddingProvider
from contextiq.core.pagination import decode_cursor, decode_int_cursor, encode_cursor
from contextiq.core.scope import scope_key
from contextiq.core.types import JSON
from contextiq.memories.extraction.base import Consolidator, Extractor
from contextiq.memories.extraction.types import (
    KEY_CONVERSATION_DETAILS,
    MANAGED_TOPICS,
    Action,
    Candidate,
    EventOutcome,
    Existing,
    ExtractionResult,
    SourceEvent,
    Topic,
)
from contextiq.memories.generation.models import (
    GENERATE_KIND,
    ExtractedMemory,
    GenerateRequest,
    GenerationAction,
    GenerationConfig,
    GenerationResult,
    JobEvent,
    JobEventPage,
    MemoryGenerationJob,
    MemoryGenerationJobPage,
    TokenUsage,
)
from contextiq.memories.generation.pipeline import (
    Applied,
    Targets,
    action_for,
    consolidate_in_order,
    drop_retracted_in_job,
    event_from_snapshot,
    event_outcomes,
    event_text,
    excerpt,
    snapshot_event,
    trim_replayed_chains,
    with_earlier_candidates,
)
from contextiq.memories.generation.store import ACTIVE, GenerationStore
from contextiq.memories.generation.tables import GenerationEventRow, GenerationJobRow
from contextiq.memories.models import MAX_FACT, MemoryBank
from contextiq.memories.service import KEEP, MemoryService
from contextiq.sessions.models import EventFilter
from contextiq.sessions.service import SessionService

log = logging.getLogger(__name__)

OFFLINE = "offline"
MAX_SESSION_EVENTS = 2000
NEIGHBOURS = 5
SESSION_PAGE = 1000
# Progress after each step (the LLM calls dominate: extraction and consolidation).
PROGRESS = {"loaded": 0.1, "extracted": 0.45, "consolidated": 0.85, "applied": 1.0}


class GenerationService:
    """Generation jobs of one deployment; every public method is scoped to a tenant."""

    def __init__(
        self,
        *,
        db: Database,
        queue: JobQueue,
        sessions: SessionService,
        memories: MemoryService,
        embeddings: Callable[[], EmbeddingProvider],
        settings: Settings,
    ) -> None:
        self._db = db
        self._queue = queue
        self._sessions = sessions
        self._memories = memories
        self._embeddings = embeddings
        self._settings = settings
        self.handler = GenerationHandler(self)
        # Runs a wait_for_completion job in the request's task, through the same leased path.
        self._inline = Worker(
            queue=queue,
            handlers={GENERATE_KIND: self.handler},
            concurrency=1,
            lease_seconds=settings.worker_lease_seconds,
            poll_interval=settings.worker_poll_interval_seconds,
            name=f"{default_worker_name()}:inline",
            pause_after=settings.test_pause_after,
        )

    # -- create ---------------------------------------------------------------------------------

    async def generate(
        self, *, tenant_id: UUID, data: GenerateRequest, idempotency_key: str | None = None
    ) -> MemoryGenerationJob:
        """Validate and enqueue a generation job; with `wait_for_completion`, run it and return it finished."""
        source_events, source_sequence, reference = self._check_source(data)
        bank = await self._bank(tenant_id, data.bank_id)
        self._check_request(bank, data)
        if data.source_type == "session":
            source_sequence = await self._session_sequence(tenant_id, reference)

        async def work(db: AsyncSession) -> MemoryGenerationJob:
            now = utcnow()
            row = await GenerationStore(db).add(
                GenerationJobRow(
                    id=new_id(),
                    tenant_id=tenant_id,
                    bank_id=bank.id,
                    status="pending",
                    source_type=data.source_type,
                    source_reference=reference,
                    scope=dict(data.scope),
                    scope_key=scope_key(data.scope),
                    config=data.config.model_dump(mode="json"),
                    progress=0.0,
                    stage="queued",
                    source_events=source_events,
                    source_sequence=source_sequence,
                    usage={},
                    created_at=now,
                    updated_at=now,
                )
            )
            await self._queue.enqueue(
                db, kind=GENERATE_KIND, tenant_id=tenant_id, job_id=row.id,
                max_attempts=self._settings.worker_max_attempts,
            )
            return _model(row, (0, self._settings.worker_max_attempts))

        job, replayed = await run_idempotent(
            self._db, tenant_id=tenant_id, key=idempotency_key, operation="memories.generate",
            payload=data.model_dump(mode="json"), model=MemoryGenerationJob, work=work,
        )
        if not replayed:
            self._queue.notify()
        if data.config.wait_for_completion:
            return await self.wait(tenant_id=tenant_id, job_id=job.id, seconds=self._settings.generation_wait_seconds)
        return await self.get_job(tenant_id=tenant_id, job_id=job.id)

    def _check_source(self, data: GenerateRequest) -> tuple[list[JSON] | None, int | None, str]:
        """Check the fields of the source type; return the inline snapshot and the source reference."""
        kind = data.source_type
        if kind != "events" and data.events is not None:
            raise Invalid("body.events", f"events are given with source_type events, not {kind}")
        if kind != "facts" and data.facts is not None:
            raise Invalid("body.facts", f"facts are given with source_type facts, not {kind}")
        if kind == "session":
            if data.source_reference is None:
                raise Invalid("body.source_reference", "the id of the session to learn from is required")
            try:
                UUID(data.source_reference)
            except ValueError as exc:
                raise Invalid("body.source_reference", f"not a session id: {data.source_reference!r}") from exc
            return None, None, str(UUID(data.source_reference))
        if kind == "events":
            if not data.events:
                raise Invalid("body.events", "at least one event is required with source_type events")
            snapshot: list[JSON] = []
            seen: set[str] = set()
            for i, item in enumerate(data.events):
                text = (item.text or "").strip() or event_text(item.content)
                if not text and item.text is None and item.content is None:
                    raise Invalid(f"body.events.{i}", "an event needs text or content")
                event_id = item.id or f"event-{i + 1}"
                if event_id in seen:
                    raise Invalid(f"body.events.{i}.id", f"duplicate event id {event_id!r}")
                seen.add(event_id)
                stamp = as_utc(item.timestamp) if item.timestamp else None
                event = SourceEvent(id=event_id, author=item.author, text=text, timestamp=stamp)
                snapshot.append(snapshot_event(event, metadata=item.metadata))
            reference = data.source_reference or f"{len(snapshot)} inline events"
            return snapshot, None, reference
        if not data.facts:
            raise Invalid("body.facts", "at least one fact is required with source_type facts")
        facts = [
            snapshot_event(SourceEvent(id=f"fact-{i + 1}", author="user", text=fact.strip()))
            for i, fact in enumerate(data.facts)
        ]
        return facts, None, data.source_reference or f"{len(facts)} facts"

    async def _bank(self, tenant_id: UUID, bank_id: UUID | None) -> MemoryBank:
        try:
            return await self._memories.get_bank(tenant_id=tenant_id, bank_id=bank_id)
        except NotFound as exc:
            raise Invalid("body.bank_id", f"memory bank {bank_id} not found") from exc

    def _check_request(self, bank: MemoryBank, data: GenerateRequest) -> None:
        if not bank.is_active:
            raise Conflict(f"memory bank {bank.id} is inactive; it accepts no new memories")
        missing = [key for key in bank.scope_keys if key not in data.scope]
        if missing:
            raise Invalid(
                "body.scope",
                f"memory bank {bank.name!r} requires the scope keys {', '.join(bank.scope_keys)}; "
                f"missing {', '.join(missing)}",
            )
        allowed = bank.topic_labels()
        unknown = [t for t in data.config.topics or () if t not in allowed]
        if unknown:
            raise Invalid(
                "body.config.topics",
                f"unknown topic {unknown[0]!r}; memory bank {bank.name!r} has {', '.join(allowed)}",
            )
        wanted = data.config.embedding_model
        if wanted is not None:
            served = self._embeddings().model
            if wanted != served and not served.endswith("/" + wanted) and not wanted.endswith("/" + served):
                raise Invalid(
                    "body.config.embedding_model",
                    f"this deployment embeds with {served!r}; omit embedding_model or name that model",
                )
        model = data.config.extraction_model
        if model is not None and model != OFFLINE and not self._settings.llm_base_url:
            raise Invalid(
                "body.config.extraction_model",
                f'no LLM endpoint is configured (CONTEXTIQ_LLM_BASE_URL), so {model!r} cannot run; '
                'omit extraction_model or use "offline"',
            )

    async def _session_sequence(self, tenant_id: UUID, reference: str) -> int:
        try:
            session = await self._sessions.get_session(tenant_id=tenant_id, session_id=UUID(reference))
        except NotFound as exc:
            raise Invalid("body.source_reference", f"session {reference} not found") from exc
        return session.event_count

    # -- read -----------------------------------------------------------------------------------

    async def get_job(self, *, tenant_id: UUID, job_id: UUID) -> MemoryGenerationJob:
        """Return a generation job with its status, progress and result."""
        async with self._db.read() as db:
            store = GenerationStore(db)
            row = await store.get(job_id=job_id, tenant_id=tenant_id)
            if row is None:
                raise NotFound("job", job_id)
            attempts = await store.attempts([row.id])
        return _model(row, attempts.get(row.id, (0, 1)))

    async def list_jobs(
        self, *, tenant_id: UUID, status: str | None = None, cursor: str | None = None, limit: int = 50
    ) -> MemoryGenerationJobPage:
        """Return one page of the tenant's generation jobs, newest first."""
        after = None
        if cursor:
            created, ident = decode_cursor(cursor, 2)
            try:
                after = (as_utc(datetime.fromisoformat(created)), UUID(ident))
            except (TypeError, ValueError) as exc:
                raise Invalid("query.cursor", "not a cursor returned by this API") from exc
        async with self._db.read() as db:
            store = GenerationStore(db)
            rows = await store.list(tenant_id=tenant_id, status=status, after=after, limit=limit + 1)
            attempts = await store.attempts([r.id for r in rows[:limit]])
        items = [_model(r, attempts.get(r.id, (0, 1))) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(last.created_at.isoformat(), str(last.id))
        return MemoryGenerationJobPage(items=items, next_cursor=next_cursor)

    async def list_job_events(
        self,
        *,
        tenant_id: UUID,
        job_id: UUID,
        status: str | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> JobEventPage:
        """Return what the job made of each source event, in event order (empty until it applies)."""
        after = decode_int_cursor(cursor)
        async with self._db.read() as db:
            store = GenerationStore(db)
            if await store.get(job_id=job_id, tenant_id=tenant_id) is None:
                raise NotFound("job", job_id)
            rows = await store.list_events(
                tenant_id=tenant_id, job_id=job_id, status=status, after_position=after, limit=limit + 1
            )
        items = [
            JobEvent(
                position=r.position, event_id=r.event_id, author=r.author, status=r.status,
                reason=r.reason, candidate_count=r.candidate_count, memory_ids=[UUID(m) for m in r.memory_ids],
                excerpt=r.excerpt, event_time=r.event_time,
            )
            for r in rows[:limit]
        ]
        next_cursor = encode_cursor(rows[limit - 1].position) if len(rows) > limit else None
        return JobEventPage(items=items, next_cursor=next_cursor)

    # -- control --------------------------------------------------------------------------------

    async def cancel_job(self, *, tenant_id: UUID, job_id: UUID) -> MemoryGenerationJob:
        """Cancel a pending or processing job; a running worker stops at its next heartbeat.

        Raises:
            NotFound: no such job for this tenant.
            Conflict: the job already completed or failed.
        """
        async with self._db.write() as db:
            store = GenerationStore(db)
            if await store.get(job_id=job_id, tenant_id=tenant_id) is None:
                raise NotFound("job", job_id)
            # The queue row first: the same lock order as the apply transaction.
            await self._queue.cancel(db, job_id=job_id, tenant_id=tenant_id)
            now = utcnow()
            await store.update_active(
                job_id=job_id, status="cancelled", completed_at=now, updated_at=now,
                error_message="cancelled by request",
            )
        return await self.get_job(tenant_id=tenant_id, job_id=job_id)

    async def wait(self, *, tenant_id: UUID, job_id: UUID, seconds: float) -> MemoryGenerationJob:
        """Run the job here if no worker has it yet, else wait for it; return it finished or at the deadline.

        A job cut off by the deadline is handed back to the queue (another worker finishes it).
        """
        deadline = time.monotonic() + seconds
        delay = 0.02
        while True:
            job = await self.get_job(tenant_id=tenant_id, job_id=job_id)
            remaining = deadline - time.monotonic()
            if job.is_finished or remaining <= 0:
                return job
            try:
                ran = await asyncio.wait_for(self._inline.run_job(job_id), remaining)
            except TimeoutError:
                continue
            if not ran:  # another worker holds it, or its retry is not due yet
                await asyncio.sleep(min(delay, max(remaining, 0.0)))
                delay = min(delay * 2, 0.5)

    # -- the pipeline (run by workers through GenerationHandler) --------------------------------

    async def _mark(self, job_id: UUID, **values: Any) -> bool:
        values.setdefault("updated_at", utcnow())
        async with self._db.write() as db:
            return await GenerationStore(db).update_active(job_id=job_id, **values)

    async def _load_events(self, row: GenerationJobRow) -> tuple[list[SourceEvent], list[str]]:
        """Return the job's source events in order, and notes for the result's errors."""
        if row.source_type != "session":
            return [event_from_snapshot(item) for item in row.source_events or []], []
        session_id = UUID(row.source_reference)
        events: list[SourceEvent] = []
        cursor: str | None = None
        until = row.source_sequence if row.source_sequence is not None else 2**62
        try:
            while True:
                page = await self._sessions.list_events(
                    tenant_id=row.tenant_id, session_id=session_id, filters=EventFilter(), cursor=cursor,
                    limit=SESSION_PAGE,
                )
                for event in page.items:
                    if event.sequence > until:
                        break
                    events.append(
                        SourceEvent(
                            id=str(event.id), author=event.author, text=event_text(event.content),
                            timestamp=event.timestamp,
                        )
                    )
                else:
                    if page.next_cursor:
                        cursor = page.next_cursor
                        continue
                break
        except NotFound as exc:
            raise JobFailed(f"session {session_id} no longer exists") from exc
        notes = []
        if len(events) > MAX_SESSION_EVENTS:
            notes.append(
                f"session {session_id} has {len(events)} events; only the newest {MAX_SESSION_EVENTS} were used"
            )
            events = events[-MAX_SESSION_EVENTS:]
        return events, notes

    def _topics(self, bank: MemoryBank, config: GenerationConfig) -> list[Topic]:
        topics = []
        for item in bank.memory_topics:
            if item.custom_memory_topic is not None:
                topics.append(Topic(item.custom_memory_topic.label, item.custom_memory_topic.description))
            else:
                topics.append(Topic(item.label, MANAGED_TOPICS[item.label]))
        if not topics:
            topics = [Topic(label, description) for label, description in MANAGED_TOPICS.items()]
        if config.topics:
            topics = [t for t in topics if t.label in config.topics]
        return topics

    def _steps(self, bank: MemoryBank, config: GenerationConfig) -> tuple[Extractor, Consolidator, str]:
        """Pick the extractor and consolidator: the LLM when configured, else the offline ones.

        The name is "offline" or "llm:<model>"; offline consolidation runs candidate by candidate
        (free), LLM consolidation in one call.
        """
        model = config.extraction_model or bank.generation_config.model or self._settings.llm_model
        use_llm = config.extraction_model != OFFLINE and (
            bool(self._settings.llm_base_url) or bank.generation_config.model is not None
        )
        if not use_llm:
            from contextiq.memories.extraction.offline import OfflineConsolidator, OfflineExtractor

            return OfflineExtractor(), OfflineConsolidator(), OFFLINE
        if not self._settings.llm_base_url:
            raise JobFailed(
                f"memory bank {bank.name!r} asks for the LLM model {model!r}, but no LLM endpoint is "
                "configured (CONTEXTIQ_LLM_BASE_URL)"
            )
        from contextiq.memories.extraction.llm import ChatClient, LLMConsolidator, LLMExtractor

        key = self._settings.llm_api_key.get_secret_value() if self._settings.llm_api_key else None
        client = ChatClient(base_url=self._settings.llm_base_url, api_key=key, model=model or "default")
        temperature, max_tokens = bank.generation_config.temperature, bank.generation_config.max_tokens
        return (
            LLMExtractor(client, temperature=temperature, max_tokens=max_tokens),
            LLMConsolidator(client, temperature=temperature, max_tokens=max_tokens),
            f"llm:{model or 'default'}",
        )

    async def _spent(self, job_id: UUID, exc: Exception, before: JSON | None = None) -> None:
        """Keep the tokens a failed LLM call spent on the job (they are billed all the same)."""
        spent = getattr(exc, "usage", None)
        if isinstance(spent, dict):
            await self._mark(job_id, usage=_usage(before, spent))

    async def _fact_candidates(self, events: Sequence[SourceEvent], topics: Sequence[Topic]) -> ExtractionResult:
        """Facts are stored as given; the offline extractor only suggests their topic and subject."""
        from contextiq.memories.extraction.offline import OfflineExtractor

        hints = await OfflineExtractor().extract(events=events, topics=topics)
        by_event: dict[str, Candidate] = {}
        for c in hints.candidates:
            for event_id in c.source_event_ids:
                by_event.setdefault(event_id, c)
        labels = [t.label for t in topics]
        fallback = KEY_CONVERSATION_DETAILS if KEY_CONVERSATION_DETAILS in labels else labels[0]
        candidates, outcomes = [], []
        for event in events:
            hint = by_event.get(event.id)
            topic = hint.topic if hint is not None and hint.topic in labels else fallback
            candidates.append(
                Candidate(
                    fact=event.text, topic=topic, confidence=1.0, source_event_ids=(event.id,),
                    event_time=event.timestamp, subject=hint.subject if hint else None,
                    is_retraction=bool(hint and hint.is_retraction),
                )
            )
            outcomes.append(EventOutcome(event.id, "extracted", "given as a fact", 1))
        return ExtractionResult(candidates=candidates, outcomes=outcomes, usage={})

    async def run_pipeline(self, ctx: JobContext) -> None:
        """Run one generation job under `ctx`'s lease (see the module docstring for crash safety)."""
        job_id = ctx.job_id
        async with self._db.read() as db:
            row = await GenerationStore(db).get(job_id=job_id)
        if row is None or row.applied_at is not None or row.status not in ACTIVE:
            # Deleted with its bank, or applied by an earlier attempt whose bookkeeping is all that
            # is missing: finish the queue row and change nothing else.
            async with self._db.write() as db:
                await ctx.fence(db)
                await ctx.complete(db)
            return
        config = GenerationConfig.model_validate(row.config)
        now = utcnow()

        events, notes = await self._load_events(row)
        try:
            bank = await self._memories.get_bank(tenant_id=row.tenant_id, bank_id=row.bank_id)
        except NotFound as exc:
            raise JobFailed(f"memory bank {row.bank_id} no longer exists") from exc
        topics = self._topics(bank, config)
        extractor, consolidator, extractor_name = self._steps(bank, config)
        await self._mark(
            job_id, status="processing", started_at=row.started_at or now, error_message=None, stage="loaded",
            progress=PROGRESS["loaded"], extractor=extractor_name,
        )

        # 1. extract (one LLM call at most)
        try:
            if row.source_type == "facts":
                extraction = await self._fact_candidates(events, topics)
            else:
                extraction = await extractor.extract(
                    events=events, topics=topics, examples=bank.few_shot_examples or ()
                )
        except Exception as exc:
            await self._spent(job_id, exc)
            if (failed := _permanent(exc)) is not None:
                raise failed from exc
            raise
        candidates, errors = _usable(extraction.candidates)
        errors = notes + errors
        usage = _usage(extraction.usage)
        extracted = [_extracted(c) for c in extraction.candidates]
        await self._mark(
            job_id, stage="extracted", progress=PROGRESS["extracted"], usage=usage, extracted_memories=extracted
        )
        await ctx.checkpoint("extract")

        # 2. embed, and find the nearest stored memories in the scope
        embedder = self._embeddings()
        vectors = await embedder.embed([c.fact for c in candidates])
        stored: list[list[Existing]] = [[] for _ in candidates]
        if candidates and not config.disable_consolidation:
            async with self._db.read() as db:
                near = await self._memories.neighbours(
                    db, tenant_id=row.tenant_id, bank_id=row.bank_id, scope=row.scope, vectors=vectors,
                    limit=NEIGHBOURS,
                )
            stored = [
                [
                    Existing(
                        id=str(memory.id), fact=memory.fact, topic=memory.topic,
                        subject=(memory.metadata_ or {}).get("subject"), similarity=float(score),
                    )
                    for memory, score in items
                ]
                for items in near
            ]
        await ctx.checkpoint("embed")

        # 3. consolidate (one LLM call at most)
        if config.disable_consolidation:
            actions = [
                action_for("SKIP", c, "a request to forget; consolidation is disabled, so nothing was matched")
                if c.is_retraction
                else action_for("CREATE", c, "consolidation disabled: stored as a new memory")
                for c in candidates
            ]
        elif candidates:
            try:
                if extractor_name == OFFLINE:
                    actions = await consolidate_in_order(consolidator, candidates, vectors, stored, limit=NEIGHBOURS)
                else:
                    neighbours = with_earlier_candidates(candidates, vectors, stored, limit=NEIGHBOURS)
                    actions = await consolidator.consolidate(candidates=candidates, neighbours=neighbours)
            except Exception as exc:
                await self._spent(job_id, exc, usage)
                if (failed := _permanent(exc)) is not None:
                    raise failed from exc
                raise
            if len(actions) != len(candidates):
                raise RuntimeError(
                    f"the consolidator returned {len(actions)} actions for {len(candidates)} candidates"
                )
            actions = drop_retracted_in_job(actions)
            actions = trim_replayed_chains(actions, {e.id: e.fact for near in stored for e in near})
            usage = _usage(extraction.usage, getattr(consolidator, "last_usage", None))
        else:
            actions = []
        # Facts rewritten by consolidation (merges) need their own vectors; embed before the write.
        rewritten = sorted({a.fact for a in actions if a.fact and a.kind in ("CREATE", "UPDATE")}
                           - {c.fact for c in candidates})
        extra = dict(zip(rewritten, await embedder.embed(rewritten), strict=True)) if rewritten else {}
        await self._mark(job_id, stage="consolidated", progress=PROGRESS["consolidated"], usage=usage)
        await ctx.checkpoint("consolidate")

        # 4. apply: memories, revisions, per-event records and the job's end in one transaction
        written: list[UUID] = []
        async with self._db.write() as db:
            await ctx.fence(db)
            store = GenerationStore(db)
            job = await store.get(job_id=job_id, lock=True)
            if job is None or job.applied_at is not None:
                await ctx.complete(db)
                return
            applied = await self._apply(
                db, row=job, bank=bank, candidates=candidates, actions=actions, vectors=vectors, extra=extra,
                events=events, errors=errors, written=written,
            )
            outcomes = event_outcomes(events, extraction.outcomes, applied)
            now = utcnow()
            await store.add_events(
                [
                    GenerationEventRow(
                        job_id=job_id, position=i, tenant_id=job.tenant_id, event_id=event.id[:255],
                        author=event.author, status=status, reason=reason, candidate_count=count,
                        memory_ids=memory_ids, excerpt=excerpt(event.text) if event.text else None,
                        event_time=event.timestamp, created_at=now,
                    )
                    for i, (event, status, reason, count, memory_ids) in enumerate(outcomes)
                ]
            )
            result = _result(applied, extraction, outcomes, errors)
            job.status = "completed"
            job.stage = "applied"
            job.progress = PROGRESS["applied"]
            job.result = result.model_dump(mode="json")
            job.usage = usage
            job.extracted_memories = extracted
            job.extractor = extractor_name
            job.error_message = None
            job.completed_at = now
            job.applied_at = now
            job.updated_at = now
            await db.flush()
            await ctx.complete(db)
            await ctx.checkpoint("apply")  # crash tests: inside the transaction, before the commit
        if written:
            await self._memories.invalidate(tenant_id=row.tenant_id, memory_ids=written, scope=row.scope)
        await ctx.checkpoint("commit")

    async def _apply(
        self,
        db: AsyncSession,
        *,
        row: GenerationJobRow,
        bank: MemoryBank,
        candidates: Sequence[Candidate],
        actions: Sequence[Action],
        vectors: npt.NDArray[np.float32],
        extra: dict[str, npt.NDArray[np.float32]],
        events: Sequence[SourceEvent],
        errors: list[str],
        written: list[UUID],
    ) -> list[Applied]:
        """Write each action's memory change in `db`; return what was done per candidate."""
        stamps = {e.id: e.timestamp for e in events if e.timestamp is not None}
        session_id = UUID(row.source_reference) if row.source_type == "session" else None
        targets = Targets()
        applied: list[Applied] = []
        for index, (candidate, action) in enumerate(zip(candidates, actions, strict=True)):
            kind = action.kind
            target = targets.resolve(action.target_id)
            fact = (action.fact or candidate.fact).strip()
            metadata: JSON = {
                "source_event_ids": list(candidate.source_event_ids),
                "job_id": str(row.id),
                "subject": candidate.subject,
            }
            reason = action.reason
            if kind in ("UPDATE", "DELETE") and target is not None and target in targets.deleted:
                if kind == "UPDATE":
                    kind, reason = "CREATE", f"{reason} (its target was deleted earlier in this job)"
                else:
                    kind, reason = "SKIP", f"{reason} (already deleted earlier in this job)"
                target = None
            if kind in ("UPDATE", "DELETE") and target is not None and not _is_uuid(target):
                errors.append(f"candidate {index}: unknown {kind} target {target!r}; skipped")
                kind, target = "SKIP", None
            if kind == "UPDATE" and target is None:
                kind, reason = "CREATE", f"{reason} (no memory to update: stored as new)"
            if kind == "DELETE" and target is None:
                kind, reason = "SKIP", f"{reason} (nothing matching to forget)"
            if kind == "CREATE" and candidate.is_retraction:
                kind, reason = "SKIP", f"{reason} (a request to forget is not stored as a memory)"
            vector = extra.get(fact, vectors[index])
            memory_id: str | None = target
            try:
                if kind == "CREATE":
                    memory = await self._memories.write_create(
                        db, tenant_id=row.tenant_id, bank=bank, scope=row.scope, fact=fact, topic=candidate.topic,
                        confidence=candidate.confidence, embedding=vector, source_type="generated",
                        source_session_id=session_id,
                        event_time=candidate.event_time or _latest(stamps, candidate),
                        metadata=metadata, extracted_memories=[candidate.fact], ttl_kind="generate_created",
                    )
                    memory_id = str(memory.id)
                    written.append(memory.id)
                elif kind == "UPDATE":
                    assert target is not None
                    said_at = candidate.event_time or _latest(stamps, candidate)
                    memory = await self._memories.write_update(
                        db, tenant_id=row.tenant_id, memory_id=UUID(target), fact=fact,
                        confidence=candidate.confidence, topic=candidate.topic, embedding=vector,
                        source_session_id=session_id, metadata_patch=metadata,
                        extracted_memories=[candidate.fact], ttl_kind="generate_updated", bank=bank,
                        revision_metadata={"job_id": str(row.id), "source_event_ids": list(candidate.source_event_ids)},
                        event_time=said_at if said_at is not None else KEEP,
                    )
                    written.append(memory.id)
                elif kind == "DELETE":
                    assert target is not None
                    memory = await self._memories.write_delete(
                        db, tenant_id=row.tenant_id, memory_id=UUID(target), source_session_id=session_id,
                        extracted_memories=[candidate.fact], reason=reason,
                    )
                    targets.deleted.add(target)
                    written.append(memory.id)
            except NotFound:
                # The neighbour vanished between the neighbour read and this transaction.
                errors.append(f"candidate {index}: memory {target} disappeared before it could be changed")
                kind, memory_id, reason = "SKIP", None, f"{reason} (the memory disappeared meanwhile)"
            targets.by_candidate[index] = memory_id if kind != "DELETE" else None
            applied.append(
                Applied(
                    kind=kind, memory_id=memory_id, fact=fact if kind in ("CREATE", "UPDATE") else None,
                    topic=candidate.topic, reason=reason, candidate=candidate,
                )
            )
        return applied

    async def on_failure(self, db: AsyncSession, job: JobRow, error: str, final: bool) -> None:
        """Record a failed attempt on the generation job (and, when final, on its inline events)."""
        store = GenerationStore(db)
        now = utcnow()
        if not final:
            await store.update_active(job_id=job.id, status="pending", error_message=error, updated_at=now)
            return
        await store.update_active(
            job_id=job.id, status="failed", error_message=error, completed_at=now, updated_at=now
        )
        row = await store.get(job_id=job.id)
        if row is None or not row.source_events or await store.has_events(job_id=job.id):
            return
        await store.add_events(
            [
                GenerationEventRow(
                    job_id=job.id, position=i, tenant_id=row.tenant_id, event_id=str(item["id"])[:255],
                    author=item.get("author"), status="failed", reason=f"the job failed: {error}",
                    candidate_count=0, memory_ids=[], excerpt=excerpt(str(item.get("text") or "")) or None,
                    event_time=event_from_snapshot(item).timestamp, created_at=now,
                )
                for i, item in enumerate(row.source_events)
            ]
        )


    async def on_release(self, db: AsyncSession, job: JobRow) -> None:
        """Show a job handed back to the queue as pending again (its next attempt starts over)."""
        await GenerationStore(db).update_active(job_id=job.id, status="pending", updated_at=utcnow())


class GenerationHandler(JobHandler):
    """Runs `memories.generate` jobs for a worker."""

    kind = GENERATE_KIND

    def __init__(self, service: GenerationService) -> None:
        self._service = service

    async def run(self, ctx: JobContext) -> None:
        await self._service.run_pipeline(ctx)

    async def on_failure(self, db: AsyncSession, job: JobRow, error: str, final: bool) -> None:
        await self._service.on_failure(db, job, error, final)

    async def on_release(self, db: AsyncSession, job: JobRow) -> None:
        await self._service.on_release(db, job)


# -- helpers -------------------------------------------------------------------------------------


def _permanent(exc: Exception) -> JobFailed | None:
    """Return a JobFailed for a failure no retry can fix (an LLM endpoint refusing the request)."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 500 and status not in (408, 429):
        return JobFailed(str(exc))
    return None


def _latest(stamps: Mapping[str, datetime], candidate: Candidate) -> datetime | None:
    """Return when the newest of a candidate's source events happened, if known."""
    times = [stamps[e] for e in candidate.source_event_ids if e in stamps]
    return max(times) if times else None


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True


def _usable(candidates: Sequence[Candidate]) -> tuple[list[Candidate], list[str]]:
    """Drop candidates that cannot be stored (empty or over-long facts), with a note for each."""
    kept, notes = [], []
    for c in candidates:
        if not c.fact.strip():
            notes.append(f"an empty candidate from events {', '.join(c.source_event_ids)} was dropped")
        elif len(c.fact) > MAX_FACT:
            notes.append(
                f"a candidate of {len(c.fact)} characters from events {', '.join(c.source_event_ids)} "
                f"was dropped (facts are at most {MAX_FACT})"
            )
        else:
            kept.append(c)
    return kept, notes


def _usage(*parts: Any) -> JSON:
    total: dict[str, int] = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for part in parts:
        if not part:
            continue
        for key in total:
            value = part.get(key) if isinstance(part, dict) else getattr(part, key, None)
            if isinstance(value, int):
                total[key] += value
    return total


def _extracted(c: Candidate) -> JSON:
    return ExtractedMemory(
        fact=c.fact, topic=c.topic, confidence=c.confidence, source_event_ids=list(c.source_event_ids),
        subject=c.subject, is_retraction=c.is_retraction,
    ).model_dump(mode="json")


def _result(
    applied: Sequence[Applied],
    extraction: ExtractionResult,
    outcomes: Sequence[tuple[SourceEvent, str, str | None, int, list[str]]],
    errors: list[str],
) -> GenerationResult:
    counts = {"CREATE": 0, "UPDATE": 0, "DELETE": 0, "SKIP": 0}
    for item in applied:
        counts[item.kind] += 1
    statuses = [status for _e, status, _r, _c, _m in outcomes]
    return GenerationResult(
        memories_created=counts["CREATE"],
        memories_updated=counts["UPDATE"],
        memories_deleted=counts["DELETE"],
        memories_skipped=counts["SKIP"],
        extracted_count=len(extraction.candidates),
        events_total=len(outcomes),
        events_extracted=statuses.count("extracted"),
        events_skipped=statuses.count("skipped"),
        events_failed=statuses.count("failed"),
        errors=list(errors),
        actions=[
            GenerationAction(
                action=item.kind,
                memory_id=UUID(item.memory_id) if item.memory_id else None,
                fact=item.fact,
                topic=item.topic,
                reason=item.reason,
                source_event_ids=list(item.candidate.source_event_ids) if item.candidate else [],
            )
            for item in applied
        ],
    )


def _model(row: GenerationJobRow, attempts: tuple[int, int]) -> MemoryGenerationJob:
    return MemoryGenerationJob(
        id=row.id,
        bank_id=row.bank_id,
        status=row.status,
        stage=row.stage,
        progress=min(max(float(row.progress), 0.0), 1.0),
        source_type=row.source_type,
        source_reference=row.source_reference,
        scope=row.scope,
        config=GenerationConfig.model_validate(row.config),
        result=GenerationResult.model_validate(row.result) if row.result is not None else None,
        error_message=row.error_message,
        attempts=attempts[0],
        max_attempts=attempts[1],
        extractor=row.extractor,
        usage=TokenUsage.model_validate(row.usage or {}),
        extracted_memories=(
            [ExtractedMemory.model_validate(m) for m in row.extracted_memories]
            if row.extracted_memories is not None else None
        ),
        created_at=row.created_at,
        started_at=row.started_at,
        completed_at=row.completed_at,
        applied_at=row.applied_at,
    )


