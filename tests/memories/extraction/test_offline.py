"""The offline extractor and consolidator: rules over user text, and reconciliation with stored memories."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest

import contextiq.memories.extraction as extraction
from contextiq.memories.extraction import (
    EXPLICIT_INSTRUCTIONS,
    KEY_CONVERSATION_DETAILS,
    USER_PERSONAL_INFO,
    USER_PREFERENCES,
    Action,
    Candidate,
    Existing,
    OfflineConsolidator,
    OfflineExtractor,
    SourceEvent,
    Topic,
    managed_topics,
    parse_statements,
)
from contextiq.memories.extraction.offline import CONFIDENT, HEDGED, content_words, split_sentences

PERSONAL = USER_PERSONAL_INFO
PREFS = USER_PREFERENCES
DETAILS = KEY_CONVERSATION_DETAILS
INSTRUCTIONS = EXPLICIT_INSTRUCTIONS
T0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)

# (what the user said, expected topic, expected fact)
CAUGHT: list[tuple[str, str, str]] = [
    # self statements
    ("I'm a nurse", PERSONAL, "I'm a nurse."),
    ("I work at Acme", PERSONAL, "I work at Acme."),
    ("I live in Berlin", PERSONAL, "I live in Berlin."),
    ("my name is ana", PERSONAL, "My name is Ana."),
    ("Hi, I'm Ana", PERSONAL, "My name is Ana."),
    ("I have two kids", PERSONAL, "I have two kids."),
    ("my sister Maria is a doctor", PERSONAL, "My sister Maria is a doctor."),
    ("I'm 34 years old", PERSONAL, "I'm 34 years old."),
    ("I'm originally from Brazil", PERSONAL, "I'm originally from Brazil."),
    ("I'm allergic to peanuts", PERSONAL, "I'm allergic to peanuts."),
    ("I'm married", PERSONAL, "I'm married."),
    ("I speak French and English", PERSONAL, "I speak French and English."),
    ("My dog's name is Rex", PERSONAL, "My dog's name is Rex."),
    ("I play the guitar", PERSONAL, "I play the guitar."),
    ("My email is ana@example.com", PERSONAL, "My email is ana@example.com."),
    ("I'm studying computer science at Stanford", PERSONAL, "I'm studying computer science at Stanford."),
    # preferences
    ("Well, honestly I prefer dark mode interfaces lol", PREFS, "I prefer dark mode interfaces."),
    ("I love sushi", PREFS, "I love sushi."),
    ("I really enjoy hiking in the mountains", PREFS, "I really enjoy hiking in the mountains."),
    ("I hate cilantro", PREFS, "I hate cilantro."),
    ("I don't like horror movies", PREFS, "I don't like horror movies."),
    ("my favourite colour is blue", PREFS, "My favourite colour is blue."),
    ("Pizza is my favorite food", PREFS, "Pizza is my favorite food."),
    ("I prefer tea over coffee", PREFS, "I prefer tea over coffee."),
    ("I'm really into jazz", PREFS, "I'm really into jazz."),
    ("I usually drink tea in the morning", PREFS, "I usually drink tea in the morning."),
    # changes
    ("I now prefer light mode", PREFS, "I now prefer light mode."),
    ("I moved to Paris", PERSONAL, "I moved to Paris."),
    ("I no longer eat meat", PERSONAL, "I no longer eat meat."),
    ("I switched to Linux", PREFS, "I switched to Linux."),
    ("I'm vegetarian now", PERSONAL, "I'm vegetarian now."),
    # explicit instructions
    ("always answer in French", INSTRUCTIONS, "Always answer in French."),
    ("please don't call me Bob", INSTRUCTIONS, "Don't call me Bob."),
    ("call me Sam", INSTRUCTIONS, "I want to be called Sam."),
    ("remember that my wife's name is Eve", INSTRUCTIONS, "My wife's name is Eve."),
    ("From now on, use metric units", INSTRUCTIONS, "Always use metric units."),
    ("never use emojis", INSTRUCTIONS, "Never use emojis."),
    ("Could you remember that I'm allergic to shellfish?", INSTRUCTIONS, "I'm allergic to shellfish."),
    ("I'd rather you didn't use emojis", INSTRUCTIONS, "Don't use emojis."),
    ("I want you to always reply in English", INSTRUCTIONS, "Always reply in English."),
    # plans, events and dates
    ("I'm going to Japan next month", DETAILS, "I'm going to Japan next month."),
    ("my birthday is May 3", PERSONAL, "My birthday is May 3."),
    ("I have a meeting on Friday", DETAILS, "I have a meeting on Friday."),
    ("I adopted a dog last week", DETAILS, "I adopted a dog last week."),
    ("we're getting married in June", DETAILS, "We're getting married in June."),
    ("I started learning the guitar", DETAILS, "I started learning the guitar."),
    ("I have a job interview at Google on Monday", DETAILS, "I have a job interview at Google on Monday."),
    ("My flight is at 6am on Monday", DETAILS, "My flight is at 6am on Monday."),
    ("I graduated from MIT in 2019", DETAILS, "I graduated from MIT in 2019."),
    # decided edge cases: a wish is a preference, reported speech about a relative is personal info
    ("I would love to visit Japan someday", PREFS, "I would love to visit Japan someday."),
    ("my friend says she likes jazz", PERSONAL, "My friend likes jazz."),
]

NOT_CAUGHT = [
    # questions are never facts
    "do I like sushi?",
    "what's my name",
    "Where do I live?",
    "I love sushi, right?",
    "Can you tell me a joke?",
    # hypotheticals
    "if I were rich I'd buy a boat",
    "If I had more time I'd learn piano",
    "I would quit my job tomorrow if I could",
    # small talk and greetings
    "ok thanks",
    "haha",
    "sounds good",
    "hello!",
    "Good morning!",
    "Thanks, that's helpful",
    "lol",
    "sure",
    # transient states and one-off requests
    "I'm tired",
    "I'm fine, thanks",
    "I'm going to bed",
    "I'm going to try that tomorrow",
    "I'll let you know tomorrow",
    "Please summarize this article",
    "I'm looking for a good restaurant",
    "I like it",
    "Forget it",
    "I'd love to hear your thoughts",
    # claims of others about the user
    "My friend told me I'm a great cook",
]


def _only(text: str) -> tuple[str, str, str | None, float, bool]:
    statements = parse_statements(text)
    assert len(statements) == 1, f"{text!r} -> {statements}"
    s = statements[0]
    return s.fact, s.topics[0], s.subject, s.confidence, s.is_retraction


@pytest.mark.parametrize(("text", "topic", "fact"), CAUGHT, ids=[c[0][:40] for c in CAUGHT])
def test_caught(text: str, topic: str, fact: str) -> None:
    got_fact, got_topic, _, _, retraction = _only(text)
    assert (got_fact, got_topic) == (fact, topic)
    assert not retraction


@pytest.mark.parametrize("text", NOT_CAUGHT)
def test_not_caught(text: str) -> None:
    assert parse_statements(text) == []


def test_the_tables_are_rich() -> None:
    assert len(CAUGHT) >= 40
    assert {topic for _, topic, _ in CAUGHT} == {PERSONAL, PREFS, DETAILS, INSTRUCTIONS}


@pytest.mark.parametrize(
    ("text", "subject"),
    [
        ("I prefer dark mode", "preference:ui mode"),
        ("I now prefer light mode", "preference:ui mode"),
        ("I prefer Python for data science", "preference:data science"),
        ("my favourite colour is blue", "preference:colour"),
        ("I love sushi", "preference:sushi"),
        ("I live in Berlin", "personal:location"),
        ("I moved to Paris", "personal:location"),
        ("I'm a nurse", "personal:job"),
        ("I work as a software engineer", "personal:job"),
        ("I work at Acme", "personal:employer"),
        ("my name is Ana", "personal:name"),
        ("I no longer eat meat", "personal:diet"),
        ("I'm vegetarian now", "personal:diet"),
        ("I'm engaged", "personal:relationship status"),
        ("always answer in French", "instruction:language"),
        ("call me Sam", "instruction:name"),
        ("I have two kids", "personal:children"),
        ("my birthday is May 3", "personal:birthday"),
    ],
)
def test_subjects(text: str, subject: str) -> None:
    assert _only(text)[2] == subject


@pytest.mark.parametrize(
    ("text", "fact", "subject"),
    [
        ("forget that I like sushi", "I like sushi.", "preference:sushi"),
        ("I don't live in Berlin anymore", "I live in Berlin.", "personal:location"),
        ("I no longer work at Acme", "I work at Acme.", "personal:employer"),
        ("Please forget where I live", "Where I live.", "personal:location"),
        ("Forget my address", "My address.", "personal:address"),
    ],
)
def test_retractions(text: str, fact: str, subject: str) -> None:
    got_fact, _, got_subject, _, retraction = _only(text)
    assert (got_fact, got_subject, retraction) == (fact, subject, True)


def test_a_negated_preference_is_a_new_value_not_a_retraction() -> None:
    fact, topic, subject, _, retraction = _only("I don't like sushi anymore")
    assert (fact, topic, subject, retraction) == ("I don't like sushi anymore.", PREFS, "preference:sushi", False)


def test_that_is_not_true_anymore_retracts_the_previous_statement() -> None:
    first, second = parse_statements("I live in Rome. That's not true anymore.")
    assert (first.fact, first.is_retraction) == ("I live in Rome.", False)
    assert (second.fact, second.subject, second.is_retraction) == ("I live in Rome.", "personal:location", True)
    assert parse_statements("That's not true anymore.") == []  # nothing to refer to


@pytest.mark.parametrize(
    ("text", "confidence"),
    [
        ("I think I'm allergic to peanuts", HEDGED),
        ("Maybe I prefer tea", HEDGED),
        ("I'm probably moving to Lisbon next year", HEDGED),
        ("I kind of like jazz", HEDGED),
        ("I'm thinking of moving to Lisbon next year", HEDGED),
        ("I wish I could play the piano", HEDGED),
        ("my mom said she's retiring next year", HEDGED),
        ("I like jazz", CONFIDENT),
    ],
)
def test_confidence(text: str, confidence: float) -> None:
    assert _only(text)[3] == confidence


def test_hedges_are_dropped_from_the_fact() -> None:
    assert _only("I think I kind of like jazz")[0] == "I like jazz."


def test_multi_sentence_messages_are_split() -> None:
    text = "Hi! I'm Ana and I work at Acme. What's the weather like? Also, I'm vegan; I love sushi lol"
    assert [s.fact for s in parse_statements(text)] == [
        "My name is Ana.", "I work at Acme.", "I'm vegan.", "I love sushi.",
    ]
    assert split_sentences("I live in St. Louis. Dr. Smith is my doctor!") == [
        "I live in St. Louis.", "Dr. Smith is my doctor!",
    ]


def test_corrections() -> None:
    # Across sentences both facts are kept; consolidation lets the later one win (same subject).
    assert [s.fact for s in parse_statements("I'm a teacher - no wait, I'm a nurse")] == [
        "I'm a teacher.", "I'm a nurse.",
    ]
    # Within one sentence only a complete restatement after the marker counts.
    assert [s.fact for s in parse_statements("I live in Rome, I mean, I live in Milan")] == ["I live in Milan."]
    assert parse_statements("I live in Rome, scratch that, Milan") == []


def test_content_words_are_crude_lemmas() -> None:
    assert content_words("I am baking breads") == content_words("bread bake")
    assert content_words("the Movies") == content_words("movie")


# --------------------------------------------------------------------------------------------
# Extractor: events, outcomes, topics
# --------------------------------------------------------------------------------------------


def _event(event_id: str, text: str, author: str = "user") -> SourceEvent:
    return SourceEvent(id=event_id, author=author, text=text, timestamp=T0)


async def test_outcomes_per_event() -> None:
    events = [
        _event("e1", "I prefer dark mode. Please always answer in French."),
        _event("e2", "You prefer dark mode, right?", author="agent"),
        _event("e3", "I live in Berlin", author="tool"),
        _event("e4", "   "),
        _event("e5", "ok thanks, sounds good"),
        _event("e6", "what's my name?"),
        _event("e7", "I live in Berlin", author="system"),
    ]
    result = await OfflineExtractor().extract(events=events, topics=managed_topics())
    assert [(o.event_id, o.status, o.reason, o.candidate_count) for o in result.outcomes] == [
        ("e1", "extracted", "found a preference, an instruction", 2),
        ("e2", "skipped", "not authored by the user", 0),
        ("e3", "skipped", "not authored by the user", 0),
        ("e4", "skipped", "no text", 0),
        ("e5", "skipped", "no memorable statement", 0),
        ("e6", "skipped", "no memorable statement", 0),
        ("e7", "skipped", "not authored by the user", 0),
    ]
    assert result.usage == {}
    first, second = result.candidates
    assert first == Candidate(
        fact="I prefer dark mode.", topic=PREFS, confidence=CONFIDENT, source_event_ids=("e1",),
        event_time=T0, subject="preference:ui mode",
    )
    assert (second.fact, second.topic, second.subject) == (
        "Always answer in French.", INSTRUCTIONS, "instruction:language",
    )


async def test_only_requested_topics() -> None:
    events = [_event("e1", "I'm a nurse and I love sushi"), _event("e2", "I live in Berlin")]
    result = await OfflineExtractor().extract(events=events, topics=[Topic(PREFS, "likes")])
    assert [(c.fact, c.topic) for c in result.candidates] == [("I love sushi.", PREFS)]
    assert result.outcomes[1].reason == "no statement for the requested topics"


async def test_a_statement_falls_back_to_its_next_topic() -> None:
    # A birthday is personal information first, and a key detail when only that is asked for.
    result = await OfflineExtractor().extract(
        events=[_event("e1", "My birthday is May 3")], topics=[Topic(DETAILS, "dates")]
    )
    assert [(c.fact, c.topic) for c in result.candidates] == [("My birthday is May 3.", DETAILS)]


async def test_custom_topics_match_shared_content_words() -> None:
    topics = [*managed_topics(), Topic("baking", "Breads and cakes the user bakes")]
    events = [
        _event("e1", "I bake sourdough bread every weekend"),  # a habit rule also caught it
        _event("e2", "My starter is older than my cakes"),  # no rule: only the custom topic reads it
        _event("e3", "I love sushi"),  # no shared word: stays a preference
    ]
    result = await OfflineExtractor().extract(events=events, topics=topics)
    assert [(c.fact, c.topic, c.confidence) for c in result.candidates] == [
        ("I bake sourdough bread every weekend.", "baking", CONFIDENT),
        ("My starter is older than my cakes.", "baking", HEDGED),
        ("I love sushi.", PREFS, CONFIDENT),
    ]


async def test_custom_topic_alone() -> None:
    topics = [Topic("travel", "Trips and travel destinations")]
    events = [_event("e1", "I'm planning a trip to Peru in July. I love sushi.")]
    result = await OfflineExtractor().extract(events=events, topics=topics)
    assert [(c.fact, c.topic) for c in result.candidates] == [("I'm planning a trip to Peru in July.", "travel")]


async def test_retraction_refers_to_what_the_agent_said_about_the_user() -> None:
    events = [
        _event("e1", "Welcome back! You live in Berlin, right?", author="agent"),
        _event("e2", "That's not true anymore."),
    ]
    result = await OfflineExtractor().extract(events=events, topics=managed_topics())
    assert [(c.fact, c.subject, c.is_retraction) for c in result.candidates] == [
        ("I live in Berlin.", "personal:location", True),
    ]
    assert result.outcomes[1].reason == "found a request to forget"


async def test_two_speakers_both_authored_user() -> None:
    # An imported chat between two people: every turn is "user", only the text matters.
    events = [
        _event("a", "Are you coming to the party on Saturday?"),
        _event("b", "Yes! I'm bringing my girlfriend, we're getting married in June"),
    ]
    result = await OfflineExtractor().extract(events=events, topics=managed_topics())
    assert [c.fact for c in result.candidates] == ["We're getting married in June."]


async def test_no_topics_means_the_managed_ones() -> None:
    result = await OfflineExtractor().extract(events=[_event("e1", "I love sushi")], topics=[])
    assert [c.topic for c in result.candidates] == [PREFS]


# --------------------------------------------------------------------------------------------
# Consolidator
# --------------------------------------------------------------------------------------------


def _candidate(fact: str, subject: str | None = None, *, retraction: bool = False, topic: str = PREFS) -> Candidate:
    return Candidate(fact=fact, topic=topic, confidence=0.9, source_event_ids=("e",), subject=subject,
                     is_retraction=retraction)


def _stored(memory_id: str, fact: str, similarity: float, subject: str | None = None) -> Existing:
    return Existing(id=memory_id, fact=fact, topic=PREFS, subject=subject, similarity=similarity)


def _summary(actions: list[Action]) -> list[tuple[str, str | None, str | None, str]]:
    return [(a.kind, a.target_id, a.fact, a.reason) for a in actions]


async def test_a_new_value_updates_the_stored_memory() -> None:
    actions = await OfflineConsolidator().consolidate(
        candidates=[_candidate("I now prefer light mode.", "preference:ui mode")],
        neighbours={0: [_stored("m1", "I prefer dark mode.", 0.86, "preference:ui mode")]},
    )
    assert _summary(actions) == [("UPDATE", "m1", "I prefer light mode.", "new value for ui mode")]


async def test_a_stored_memory_without_subject_is_read_for_its_slot() -> None:
    actions = await OfflineConsolidator().consolidate(
        candidates=[_candidate("I moved to Paris.", "personal:location")],
        neighbours={0: [_stored("m1", "The user lives in Berlin.", 0.7)]},
    )
    assert _summary(actions) == [("UPDATE", "m1", "I moved to Paris.", "new value for location")]


async def test_a_contradiction_without_subjects_needs_similarity() -> None:
    candidate = _candidate("I don't drink coffee anymore.")
    near = await OfflineConsolidator().consolidate(
        candidates=[candidate], neighbours={0: [_stored("m1", "I drink coffee.", 0.8)]}
    )
    far = await OfflineConsolidator().consolidate(
        candidates=[candidate], neighbours={0: [_stored("m1", "I drink coffee.", 0.5)]}
    )
    assert _summary(near) == [("UPDATE", "m1", "I don't drink coffee.", "contradicts a stored memory")]
    assert [a.kind for a in far] == ["CREATE"]


@pytest.mark.parametrize(
    ("fact", "stored", "similarity"),
    [
        ("I really prefer dark mode.", "I prefer dark mode.", 0.95),  # near-duplicate
        ("I prefer dark mode.", "i prefer dark mode", 0.2),  # same text, whatever the vectors say
        ("I'm vegetarian now.", "I am vegetarian.", 0.8),  # same slot and value
    ],
)
async def test_duplicates_are_skipped(fact: str, stored: str, similarity: float) -> None:
    subject = parse_statements(fact)[0].subject
    actions = await OfflineConsolidator().consolidate(
        candidates=[_candidate(fact, subject)], neighbours={0: [_stored("m1", stored, similarity)]}
    )
    assert _summary(actions) == [("SKIP", None, None, "already remembered")]


async def test_a_retraction_deletes_the_matching_memory() -> None:
    actions = await OfflineConsolidator().consolidate(
        candidates=[_candidate("I like sushi.", "preference:sushi", retraction=True)],
        neighbours={0: [_stored("m2", "I love ramen.", 0.78), _stored("m1", "I love sushi.", 0.85)]},
    )
    assert _summary(actions) == [("DELETE", "m1", None, "forgets sushi")]


async def test_a_retraction_of_another_value_deletes_nothing() -> None:
    actions = await OfflineConsolidator().consolidate(
        candidates=[_candidate("I live in Berlin.", "personal:location", retraction=True)],
        neighbours={0: [_stored("m1", "I live in Munich.", 0.8, "personal:location")]},
    )
    assert _summary(actions) == [("SKIP", None, None, "nothing to retract")]


async def test_unrelated_facts_are_created() -> None:
    candidate = _candidate("I love jazz.", "preference:jazz")
    actions = await OfflineConsolidator().consolidate(
        candidates=[candidate, _candidate("I have a dog.")],
        neighbours={0: [_stored("m1", "I love sushi.", 0.6, "preference:sushi")]},
    )
    assert _summary(actions) == [
        ("CREATE", None, "I love jazz.", "new memory"), ("CREATE", None, "I have a dog.", "new memory"),
    ]
    assert actions[0].candidate is candidate


async def test_within_a_batch_the_later_statement_wins() -> None:
    candidates = [
        _candidate("I prefer dark mode.", "preference:ui mode"),
        _candidate("I love jazz.", "preference:jazz"),
        _candidate("I now prefer light mode.", "preference:ui mode"),
        _candidate("I love jazz.", "preference:jazz"),
        _candidate("I have a dog."),
        _candidate("I have a dog."),
        _candidate("I like sushi.", "preference:sushi"),
        _candidate("I like sushi.", "preference:sushi", retraction=True),
    ]
    # Earlier candidates offered as neighbours (as the pipeline does) are handled in-batch, not targeted.
    neighbours = {2: [_stored("candidate:0", "I prefer dark mode.", 0.9, "preference:ui mode")]}
    actions = await OfflineConsolidator().consolidate(candidates=candidates, neighbours=neighbours)
    assert _summary(actions) == [
        ("SKIP", None, None, "superseded later in the same conversation"),
        ("SKIP", None, None, "repeated in the same conversation"),
        ("CREATE", None, "I now prefer light mode.", "new memory"),
        ("CREATE", None, "I love jazz.", "new memory"),
        ("CREATE", None, "I have a dog.", "new memory"),
        ("SKIP", None, None, "repeated in the same conversation"),
        ("SKIP", None, None, "retracted later in the same conversation"),
        ("SKIP", None, None, "nothing to retract"),
    ]


async def test_a_stored_memory_is_targeted_once_per_batch() -> None:
    stored = [_stored("m1", "I love sushi.", 0.9, "preference:sushi")]
    actions = await OfflineConsolidator().consolidate(
        candidates=[
            _candidate("Forget that I love sushi.", "preference:sushi", retraction=True),
            _candidate("I love sushi.", "preference:sushi", retraction=True),
        ],
        neighbours={0: stored, 1: stored},
    )
    assert [(a.kind, a.reason) for a in actions] == [("DELETE", "forgets sushi"), ("SKIP", "already retracted")]


def test_thresholds_are_validated() -> None:
    consolidator = OfflineConsolidator(duplicate_threshold=0.95, related_threshold=0.8)
    assert (consolidator.duplicate_threshold, consolidator.related_threshold) == (0.95, 0.8)
    with pytest.raises(ValueError, match="related_threshold"):
        OfflineConsolidator(duplicate_threshold=0.7, related_threshold=0.8)


async def test_extract_then_consolidate() -> None:
    events = [
        _event("e1", "I prefer dark mode and I live in Berlin."),
        _event("e2", "Actually I now prefer light mode. I don't live in Berlin anymore."),
    ]
    result = await OfflineExtractor().extract(events=events, topics=managed_topics())
    stored = [_stored("m9", "I live in Berlin.", 0.97, "personal:location")]
    neighbours = {i: stored for i, c in enumerate(result.candidates) if c.subject == "personal:location"}
    actions = await OfflineConsolidator().consolidate(candidates=result.candidates, neighbours=neighbours)
    assert [(a.kind, a.target_id, a.reason) for a in actions] == [
        ("SKIP", None, "superseded later in the same conversation"),
        ("SKIP", None, "retracted later in the same conversation"),
        ("CREATE", None, "new memory"),
        ("DELETE", "m9", "forgets location"),
    ]


# --------------------------------------------------------------------------------------------
# Package
# --------------------------------------------------------------------------------------------


def test_package_exports() -> None:
    # Ruff's order (RUF022): constants, then classes, then functions, each alphabetical.
    kinds = sorted(extraction.__all__, key=lambda n: (not n.isupper(), not n[:1].isupper(), n))
    assert extraction.__all__ == kinds
    assert {"LLMExtractor", "LLMConsolidator", "ChatClient", "LLMError", "OfflineExtractor"} <= set(
        extraction.__all__
    )
    with pytest.raises(AttributeError):
        _ = extraction.NoSuchThing


def test_the_llm_module_loads_lazily() -> None:
    code = (
        "import sys, contextiq.memories.extraction as e; "
        "assert 'contextiq.memories.extraction.llm' not in sys.modules; print(e.OfflineExtractor.__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    llm = pytest.importorskip("contextiq.memories.extraction.llm")
    assert extraction.LLMError is llm.LLMError
