"""The pure parts of generation: event text, intra-job neighbours, action targets, per-event outcomes.

Nothing here touches storage; `service.py` runs the steps and applies their result in one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from contextiq.core.types import JSON
from contextiq.memories.extraction.base import Consolidator
from contextiq.memories.extraction.offline import content_words
from contextiq.memories.extraction.types import Action, Candidate, EventOutcome, Existing, SourceEvent

CANDIDATE_PREFIX = "candidate:"
NEW_PREFIX = "new:"  # a memory an earlier candidate of the job creates, shown as if stored
_NEGATION = re.compile(r"\b(?:not|no|never|nor|without)\b|n't\b", re.IGNORECASE)
_PUNCT = re.compile(r"[^\w\s]")
EXCERPT_LENGTH = 280


def event_text(content: Any) -> str:
    """Return the text of an event's content: a string, `{"text": …}` or ADK `{"parts": [{"text": …}]}`."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, Mapping):
        parts: list[str] = []
        text = content.get("text")
        if isinstance(text, str):
            parts.append(text)
        for part in content.get("parts") or ():
            if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(p.strip() for p in parts if p.strip())
    if isinstance(content, list):
        return "\n".join(t for t in (event_text(item) for item in content) if t)
    return ""


def excerpt(text: str) -> str:
    """Return the start of a text for per-event records."""
    return text if len(text) <= EXCERPT_LENGTH else text[: EXCERPT_LENGTH - 1] + "…"


def snapshot_event(event: SourceEvent, *, metadata: JSON | None = None) -> JSON:
    """Return the JSON form of a source event kept on the job."""
    item: JSON = {"id": event.id, "author": event.author, "text": event.text}
    if event.timestamp is not None:
        item["timestamp"] = event.timestamp.isoformat()
    if metadata:
        item["metadata"] = metadata
    return item


def event_from_snapshot(item: Mapping[str, Any]) -> SourceEvent:
    """Rebuild a source event from its JSON form."""
    stamp = item.get("timestamp")
    return SourceEvent(
        id=str(item["id"]),
        author=str(item.get("author") or "user"),
        text=str(item.get("text") or ""),
        timestamp=datetime.fromisoformat(stamp) if isinstance(stamp, str) else None,
    )


def candidate_key(index: int) -> str:
    """Return the id under which candidate `index` appears as a neighbour of later candidates."""
    return f"{CANDIDATE_PREFIX}{index}"


def with_earlier_candidates(
    candidates: Sequence[Candidate],
    vectors: npt.NDArray[np.float32],
    stored: Sequence[Sequence[Existing]],
    *,
    limit: int = 5,
) -> dict[int, list[Existing]]:
    """Return each candidate's neighbours: stored memories plus the earlier candidates of the same job.

    A session that says "I prefer dark mode" and later "I now prefer light mode" yields two
    candidates and no stored memory yet; offering the first as a neighbour of the second lets the
    consolidator UPDATE it (the apply step resolves `candidate:<i>` to the memory candidate i
    wrote), instead of storing two contradicting memories.
    """
    result: dict[int, list[Existing]] = {}
    sims = vectors @ vectors.T if len(candidates) else np.zeros((0, 0), dtype=np.float32)
    for j, candidate in enumerate(candidates):
        pool = list(stored[j]) if j < len(stored) else []
        for i in range(j):
            earlier = candidates[i]
            if earlier.is_retraction:
                continue
            pool.append(
                Existing(
                    id=candidate_key(i),
                    fact=earlier.fact,
                    topic=earlier.topic,
                    subject=earlier.subject,
                    similarity=float(sims[j, i]),
                )
            )
        if pool:
            result[j] = _rank(candidate, pool, limit)
    return result


@dataclass(slots=True)
class _Written:
    fact: str
    topic: str
    subject: str | None
    vector: npt.NDArray[np.float32]


def _rank(candidate: Candidate, pool: Sequence[Existing], limit: int) -> list[Existing]:
    # Same-subject neighbours first (a slot conflict is the strongest signal), then by similarity.
    ordered = sorted(pool, key=lambda e: (candidate.subject is None or e.subject != candidate.subject, -e.similarity))
    return ordered[: max(limit, 1)]


async def consolidate_in_order(
    consolidator: Consolidator,
    candidates: Sequence[Candidate],
    vectors: npt.NDArray[np.float32],
    stored: Sequence[Sequence[Existing]],
    *,
    limit: int = 5,
) -> list[Action]:
    """Consolidate one candidate at a time, each against the memories as the earlier ones left them.

    This is what a conversation means: "I prefer dark mode", later "I now prefer light mode" is a
    change, so the first creates a memory and the second UPDATEs it (the old fact kept as a
    revision, valid until the change), exactly as if the two had come in two jobs. It costs one
    consolidator call per candidate, so it is for local consolidators; an LLM consolidator gets
    the whole job in one call (`with_earlier_candidates`). Targets that name a memory created by
    an earlier candidate come back as `candidate:<i>`.
    """
    written: dict[str, _Written] = {}  # stored memory id or new:<i> -> its fact after the earlier actions
    deleted: set[str] = set()
    actions: list[Action] = []
    for j, candidate in enumerate(candidates):
        vector = vectors[j]
        pool: dict[str, Existing] = {}
        for e in stored[j] if j < len(stored) else ():
            if e.id not in deleted and e.id not in written:
                pool[e.id] = e
        for key, item in written.items():
            pool[key] = Existing(key, item.fact, item.topic, item.subject, float(vector @ item.vector))
        near = _rank(candidate, list(pool.values()), limit)
        (action,) = await consolidator.consolidate(candidates=[candidate], neighbours={0: near} if near else {})
        target = action.target_id
        if action.kind == "CREATE":
            fact = action.fact or candidate.fact
            written[f"{NEW_PREFIX}{j}"] = _Written(fact, candidate.topic, candidate.subject, vector)
        elif action.kind == "UPDATE" and target is not None:
            old = pool.get(target)
            subject = candidate.subject or (old.subject if old else None)
            written[target] = _Written(action.fact or candidate.fact, candidate.topic, subject, vector)
        elif action.kind == "DELETE" and target is not None:
            deleted.add(target)
            written.pop(target, None)
        if target is not None and target.startswith(NEW_PREFIX):
            action = Action(
                kind=action.kind, candidate=action.candidate,
                target_id=CANDIDATE_PREFIX + target[len(NEW_PREFIX):], fact=action.fact, reason=action.reason,
            )
        actions.append(action)
    return actions


def drop_retracted_in_job(actions: Sequence[Action]) -> list[Action]:
    """Store nothing of what the same job later asks to forget.

    "I have a dog named Rex" followed by "forget that I have a dog" in one conversation leaves no
    memory (not a memory created and deleted, whose revisions would still hold the fact): the
    CREATE, any UPDATE of that new memory, and the DELETE all become SKIP.
    """
    result = list(actions)
    for index, action in enumerate(actions):
        target = action.target_id
        if action.kind != "DELETE" or target is None or not target.startswith(CANDIDATE_PREFIX):
            continue
        try:
            origin = int(target[len(CANDIDATE_PREFIX):])
        except ValueError:
            continue
        if not 0 <= origin < len(actions) or actions[origin].kind != "CREATE":
            continue
        for k in range(len(actions)):
            if k == origin or (actions[k].target_id == target and k != index):
                result[k] = _skip(actions[k], "retracted later in the same conversation, so never stored")
        result[index] = _skip(action, "forgets what the same conversation said earlier, so nothing was stored")
    return result


def same_fact(a: str, b: str) -> bool:
    """Tell whether two facts say the same (case, punctuation, fillers like "now" aside; negation kept)."""
    if " ".join(_PUNCT.sub(" ", a.lower()).split()) == " ".join(_PUNCT.sub(" ", b.lower()).split()):
        return True
    return content_words(a) == content_words(b) and bool(_NEGATION.search(a)) == bool(_NEGATION.search(b))


def trim_replayed_chains(actions: Sequence[Action], current: Mapping[str, str]) -> list[Action]:
    """Skip the UPDATEs that only replay how a stored memory got to what it says now.

    Clients often generate from the whole session again after each turn. Replayed in order,
    "I live in Paris", "I moved to Berlin", "now Munich" against a memory that already says
    Berlin would update it to Paris, back to Berlin, then to Munich; the part of the chain up to
    the last UPDATE that matches the memory as it stands is history already recorded, so it is
    skipped and only "Munich" is written. `current` maps stored memory ids to their fact.
    """
    result = list(actions)
    chains: dict[str, list[int]] = {}
    for k, action in enumerate(actions):
        target = action.target_id
        if action.kind in ("UPDATE", "DELETE") and target is not None and not target.startswith(CANDIDATE_PREFIX):
            chains.setdefault(target, []).append(k)
    for target, chain in chains.items():
        now = current.get(target)
        if now is None:
            continue
        last = None
        for position, k in enumerate(chain):
            action = actions[k]
            said = [action.fact or ""] + ([action.candidate.fact] if action.candidate else [])
            if action.kind == "UPDATE" and any(same_fact(fact, now) for fact in said):
                last = position
        if last is None:
            continue
        for k in chain[: last + 1]:
            result[k] = _skip(actions[k], f"already remembered: memory {target} reached this value before")
    return result


def _skip(action: Action, reason: str) -> Action:
    return Action(kind="SKIP", candidate=action.candidate, target_id=None, fact=None, reason=reason)


@dataclass(slots=True)
class Applied:
    """What the apply step did for one candidate."""

    kind: str
    memory_id: str | None
    fact: str | None
    topic: str | None
    reason: str
    candidate: Candidate | None


@dataclass(slots=True)
class Targets:
    """Resolves `candidate:<i>` targets to the memory candidate i created or touched."""

    by_candidate: dict[int, str | None] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)

    def resolve(self, target: str | None) -> str | None:
        if target is None:
            return None
        if target.startswith(CANDIDATE_PREFIX):
            try:
                index = int(target[len(CANDIDATE_PREFIX):])
            except ValueError:
                return None
            return self.by_candidate.get(index)
        return target


def event_outcomes(
    events: Sequence[SourceEvent],
    outcomes: Sequence[EventOutcome],
    applied: Sequence[Applied],
) -> list[tuple[SourceEvent, str, str | None, int, list[str]]]:
    """Return, per source event in order: (event, status, reason, candidate count, memory ids).

    The extraction outcome gives the status; the reason adds what consolidation did with the
    event's candidates, so a user can see why a statement did or did not become a memory.
    """
    by_event = {o.event_id: o for o in outcomes}
    touched: dict[str, list[Applied]] = {}
    for item in applied:
        if item.candidate is None:
            continue
        for event_id in item.candidate.source_event_ids:
            touched.setdefault(event_id, []).append(item)
    rows = []
    for event in events:
        outcome = by_event.get(event.id)
        items = touched.get(event.id, [])
        if outcome is None:
            status = "extracted" if items else "skipped"
            reason: str | None = None if items else "no outcome reported by the extractor"
            count = len(items)
        else:
            status, reason, count = outcome.status, outcome.reason, outcome.candidate_count
        memory_ids: list[str] = []
        notes: list[str] = []
        for item in items:
            if item.memory_id is not None and item.memory_id not in memory_ids:
                memory_ids.append(item.memory_id)
            notes.append(f"{item.kind}: {item.reason}")
        if notes:
            reason = "; ".join(([reason] if reason else []) + notes)
        rows.append((event, status, reason, count, memory_ids))
    return rows


def action_for(kind: str, candidate: Candidate, reason: str, target: str | None = None) -> Action:
    """Build an action for a candidate (used when consolidation is disabled or overridden)."""
    return Action(kind=kind, candidate=candidate, target_id=target, fact=candidate.fact, reason=reason)  # type: ignore[arg-type]
