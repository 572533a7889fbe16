"""The pure steps of generation: event text, intra-job neighbours, target resolution, per-event outcomes."""

from __future__ import annotations

import numpy as np

from contextiq.memories.extraction.types import Candidate, EventOutcome, Existing, SourceEvent
from contextiq.memories.generation.pipeline import (
    Applied,
    Targets,
    candidate_key,
    event_outcomes,
    event_text,
    with_earlier_candidates,
)


def test_event_text_reads_plain_adk_and_nested_content() -> None:
    assert event_text("  hi ") == "hi"
    assert event_text({"text": "hello"}) == "hello"
    assert event_text({"role": "user", "parts": [{"text": "a"}, {"function_call": {}}, {"text": "b"}]}) == "a\nb"
    assert event_text([{"text": "x"}, "y"]) == "x\ny"
    assert event_text({"parts": [{"inline_data": {}}]}) == ""
    assert event_text(None) == ""


def _candidate(fact: str, subject: str | None, *, retraction: bool = False, event: str = "e") -> Candidate:
    return Candidate(fact=fact, topic="USER_PREFERENCES", confidence=0.9, source_event_ids=(event,),
                     subject=subject, is_retraction=retraction)


def test_earlier_candidates_are_offered_as_neighbours_same_subject_first() -> None:
    cands = [
        _candidate("I prefer dark mode.", "preference:ui mode"),
        _candidate("I live in Berlin.", "personal:location"),
        _candidate("I now prefer light mode.", "preference:ui mode"),
    ]
    vectors = np.eye(3, dtype=np.float32)
    vectors[2] = np.array([0.6, 0.8, 0.0], dtype=np.float32)  # closer to Berlin than to dark mode
    stored = [[], [], [Existing("m1", "I like tea.", "USER_PREFERENCES", None, 0.9)]]
    result = with_earlier_candidates(cands, vectors, stored)
    assert 0 not in result  # nothing stored and nothing earlier
    assert [e.id for e in result[1]] == [candidate_key(0)]
    # The same-subject earlier candidate ranks first, despite lower similarity than the others.
    assert [e.id for e in result[2]] == [candidate_key(0), "m1", candidate_key(1)]


def test_retractions_are_never_offered_as_targets() -> None:
    cands = [_candidate("Forget my dog.", "personal:pet", retraction=True), _candidate("I have a cat.", "personal:pet")]
    result = with_earlier_candidates(cands, np.eye(2, dtype=np.float32), [[], []])
    assert result == {}


def test_targets_resolve_candidates_to_the_memory_they_wrote() -> None:
    targets = Targets()
    targets.by_candidate[0] = "0190-memory"
    assert targets.resolve(candidate_key(0)) == "0190-memory"
    assert targets.resolve(candidate_key(1)) is None
    assert targets.resolve("candidate:x") is None
    assert targets.resolve("0190-other") == "0190-other"
    assert targets.resolve(None) is None


def test_event_outcomes_explain_what_happened_to_each_event() -> None:
    events = [SourceEvent("e1", "user", "I prefer dark mode."), SourceEvent("e2", "agent", "Noted."),
              SourceEvent("e3", "user", "I like tea.")]
    outcomes = [
        EventOutcome("e1", "extracted", "a preference", 1),
        EventOutcome("e2", "skipped", "agent turn", 0),
        EventOutcome("e3", "extracted", "a preference", 1),
    ]
    dark = _candidate("I prefer dark mode.", "preference:ui mode", event="e1")
    tea = _candidate("I like tea.", None, event="e3")
    applied = [
        Applied("CREATE", "m1", dark.fact, dark.topic, "new", dark),
        Applied("SKIP", "m0", None, tea.topic, "near-duplicate of m0", tea),
    ]
    rows = event_outcomes(events, outcomes, applied)
    assert [(e.id, s, n, m) for e, s, _r, n, m in rows] == [
        ("e1", "extracted", 1, ["m1"]), ("e2", "skipped", 0, []), ("e3", "extracted", 1, ["m0"]),
    ]
    assert rows[0][2] == "a preference; CREATE: new"
    assert rows[1][2] == "agent turn"
    assert rows[2][2] == "a preference; SKIP: near-duplicate of m0"
