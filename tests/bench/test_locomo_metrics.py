"""bench/locomo.py: evidence normalisation, session dates, metrics and loading, on made-up data."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_locomo", ROOT / "bench" / "locomo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module
    spec.loader.exec_module(module)
    return module


locomo = _load()
VALID = {"D1:1", "D1:2", "D2:7", "D8:6", "D9:17", "D11:26"}


@pytest.mark.parametrize(
    ("raw", "kept", "repaired", "dropped"),
    [
        (["D1:1", "D2:7"], ["D1:1", "D2:7"], 0, 0),
        (["D8:6; D9:17"], ["D8:6", "D9:17"], 1, 0),
        (["D:11:26"], ["D11:26"], 1, 0),
        (["D01:02", " D1:1 "], ["D1:2", "D1:1"], 1, 0),
        (["D", "D3:99", "x"], [], 0, 3),
        (["D1:1", "D1:1"], ["D1:1"], 0, 0),
        ([], [], 0, 0),
    ],
)
def test_normalise_evidence(raw: list[str], kept: list[str], repaired: int, dropped: int) -> None:
    assert locomo.normalise_evidence(raw, VALID) == (kept, repaired, dropped)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1:56 pm on 8 May, 2023", datetime(2023, 5, 8, 13, 56, tzinfo=UTC)),
        ("10:04 am on 19 December, 2023", datetime(2023, 12, 19, 10, 4, tzinfo=UTC)),
        ("12:00 am on 1 January, 2022", datetime(2022, 1, 1, 0, 0, tzinfo=UTC)),
        ("7:05 pm on March 3, 2021", datetime(2021, 3, 3, 19, 5, tzinfo=UTC)),
    ],
)
def test_parse_session_time(text: str, expected: datetime) -> None:
    assert locomo.parse_session_time(text) == expected


def test_parse_session_time_refuses_other_formats() -> None:
    with pytest.raises(ValueError, match="unrecognised session date"):
        locomo.parse_session_time("yesterday")


def test_recall_hit_and_ndcg() -> None:
    ranked = ["a", "x", "b", "y", "z"]
    evidence = ["a", "b", "c"]
    assert locomo.recall_at(ranked, evidence, 1) == pytest.approx(1 / 3)
    assert locomo.recall_at(ranked, evidence, 5) == pytest.approx(2 / 3)
    assert locomo.hit_at(ranked, evidence, 1) == 1.0
    assert locomo.hit_at(["x", "a"], evidence, 1) == 0.0
    dcg = 1 + 1 / math.log2(4)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert locomo.ndcg_at(ranked, evidence, 10) == pytest.approx(dcg / ideal)
    assert locomo.ndcg_at(["a", "b", "c"], evidence, 10) == pytest.approx(1.0)
    assert locomo.ndcg_at(["x"], evidence, 10) == 0.0
    assert locomo.recall_at(ranked, [], 5) == 0.0


def test_question_metrics_count_a_repeated_id_once() -> None:
    # A generated memory made of two turns ranks both; the same turn twice must not push others out.
    m = locomo.question_metrics(["a", "a", "a", "a", "a", "b"], ["b"])
    assert m["recall@5"] == 1.0  # after de-duplication "b" is second


def _sample(sample_id: str) -> dict[str, object]:
    return {
        "sample_id": sample_id,
        "conversation": {
            "speaker_a": "Ana",
            "speaker_b": "Bo",
            "session_1_date_time": "9:00 am on 2 January, 2024",
            "session_1": [
                {"speaker": "Ana", "dia_id": "D1:1", "text": "I adopted a cat."},
                {
                    "speaker": "Bo",
                    "dia_id": "D1:2",
                    "text": "Nice!",
                    "blip_caption": "a photo of a cat",
                    "img_url": ["http://example.invalid/cat.jpg"],
                },
            ],
            "session_2_date_time": "6:30 pm on 5 February, 2024",
            "session_2": [{"speaker": "Ana", "dia_id": "D2:1", "text": "The cat is called Miso."}],
            "session_3_date_time": "1:00 pm on 1 March, 2024",  # a date with no session: ignored
        },
        "qa": [
            {"question": "What pet?", "answer": "a cat", "evidence": ["D1:1"], "category": 4},
            {"question": "Name and when?", "answer": "x", "evidence": ["D1:1; D2:1"], "category": 1},
            {"question": "Broken", "answer": "x", "evidence": ["D:9:9"], "category": 2},
            {"question": "Trick", "adversarial_answer": "x", "evidence": ["D:2:1"], "category": 5},
        ],
    }


def test_load_conversations_orders_turns_and_skips_unscorable_questions(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps([_sample("s1")]))
    (conv,) = locomo.load_conversations(path)
    assert [t.dia_id for t in conv.turns] == ["D1:1", "D1:2", "D2:1"]
    assert conv.turns[2].time == datetime(2024, 2, 5, 18, 30, tzinfo=UTC)
    assert conv.turns[1].caption == "a photo of a cat"
    assert [(q.index, q.evidence) for q in conv.questions] == [(0, ("D1:1",)), (1, ("D1:1", "D2:1")), (3, ("D2:1",))]
    assert conv.skipped["QA items without valid evidence (skipped)"] == 1
    assert conv.skipped["evidence ids dropped"] == 1
    assert conv.scope == {"user_id": "locomo-s1"}
    assert locomo.turn_text(conv.turns[1]) == "Bo: Nice! [image: a photo of a cat]"
    assert locomo.turn_text(conv.turns[0], date=True) == "(2 January 2024) Ana: I adopted a cat."


def test_category_table_and_rankings_file(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(json.dumps([_sample("s1")]))
    conversations = locomo.load_conversations(path)
    rankings = {("s1", 0): ["D1:1", "D2:1"], ("s1", 1): ["D2:1", "D1:2"], ("s1", 3): ["D1:2"]}
    table = locomo.category_table(conversations, rankings)
    assert table["4"]["recall@5"] == 1.0
    assert table["1"]["recall@5"] == 0.5
    assert table["1-4"]["n"] == 2
    assert table["1-4"]["recall@10"] == pytest.approx(0.75)
    assert table["5"]["hit@20"] == 0.0  # adversarial: reported apart, not in 1-4
    assert locomo.recall10(conversations, rankings) == pytest.approx(0.75)
    assert "1-4 all" in locomo.render_table("t", table)
    out = tmp_path / "ranks.jsonl"
    locomo.write_rankings(out, conversations, rankings)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0] == {"sample_id": "s1", "qa_index": 0, "ranked": ["D1:1", "D2:1"]}
    assert [line["qa_index"] for line in lines] == [0, 1, 3]


def test_percentile() -> None:
    assert locomo.percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert locomo.percentile([float(i) for i in range(1, 101)], 95) == 95.0
    assert math.isnan(locomo.percentile([], 50))
