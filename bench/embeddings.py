"""Benchmark the local embedding provider: batch throughput and single-query latency.

Run from the repository root::

    PYTHONPATH=src python bench/embeddings.py [--sentences 1000] [--queries 200] [--threads 1 2]
        [--precision int8 fp32]

Prints one row per precision and thread count: sentences per second for one ``embed()``
of N conversational-length sentences (best of ``--repeats``), and p50/p95
of ``embed_one()`` on distinct short queries (no cache). Targets: >= 400
sentences/s batched and <= 5 ms per single query.

Wall-clock numbers suffer when other processes compete for the cores, so the
CPU time the process used is shown beside them (``sent/cpu-s``: sentences
per CPU-second over all threads; ``cpu p50``: CPU ms per query), and the
load average is printed first.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

import anyio

from contextiq.core.llm.embeddings.local import LocalMiniLMProvider, Precision

_SUBJECTS = [
    "I",
    "My manager",
    "The customer",
    "Our team",
    "She",
    "The new intern",
    "My partner",
    "The support bot",
    "We",
    "The landlord",
]
_VERBS = [
    "prefers",
    "asked about",
    "keeps forgetting",
    "wants to change",
    "is worried about",
    "really likes",
    "complained about",
    "scheduled a call about",
    "needs help with",
    "just finished",
]
_OBJECTS = [
    "dark mode in the editor",
    "the quarterly budget report",
    "the flight to Lisbon next Tuesday",
    "a vegetarian recipe for dinner",
    "the password reset email that never arrived",
    "migrating the database to PostgreSQL",
    "the dentist appointment on Friday afternoon",
    "learning Rust after years of Python",
    "the noisy neighbours upstairs",
    "renewing the car insurance before it expires",
]
_TAILS = [
    "",
    ".",
    " because it keeps coming up in meetings.",
    ", can you remind me tomorrow morning?",
    " and would like a short summary of the options.",
    " — please keep it under five hundred words and mention the deadline.",
    "?",
    " since last week, and nobody has replied to the ticket yet.",
]


def conversational_sentences(count: int, seed: int) -> list[str]:
    """Distinct sentences of chat-message length (about 5 to 30 words)."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{rng.choice(_TAILS)} (#{i})"
        for i in range(count)
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def measure(
    precision: Precision, threads: int, sentences: int, queries: int, repeats: int, batch_size: int
) -> dict[str, float]:
    provider = LocalMiniLMProvider(precision=precision, threads=threads, batch_size=batch_size)
    started = time.perf_counter()
    await provider.load()
    load_s = time.perf_counter() - started

    corpus = conversational_sentences(sentences, seed=1)
    await provider.embed(corpus[:128])  # warm-up: allocator, kernels
    best = best_cpu = float("inf")
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        vectors = await provider.embed(corpus)
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - started_cpu)
    assert vectors.shape == (sentences, 384)

    probes = conversational_sentences(queries + 20, seed=2)
    for text in probes[:20]:
        await provider.embed_one(text)  # warm-up
    latencies: list[float] = []
    cpu: list[float] = []
    for text in probes[20:]:
        started, started_cpu = time.perf_counter(), time.process_time()
        await provider.embed_one(text)
        latencies.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    await provider.aclose()
    return {
        "load_s": load_s,
        "throughput": sentences / best,
        "cpu_throughput": sentences / max(best_cpu, 1e-9),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "cpu_p50_ms": percentile(cpu, 50),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--precision", nargs="+", choices=["int8", "fp32"], default=["int8", "fp32"])
    args = parser.parse_args()

    words = [len(s.split()) for s in conversational_sentences(args.sentences, seed=1)]
    print(
        f"local provider (all-MiniLM-L6-v2 int8, onnxruntime): {args.sentences} sentences "
        f"of {min(words)}-{max(words)} words (mean {statistics.fmean(words):.1f}), "
        f"batch size {args.batch_size}; {args.queries} single queries"
    )
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    header = (
        f"{'precision':>9} | {'threads':>7} | {'load s':>6} | {'batch sent/s':>12} | {'sent/cpu-s':>10} | "
        f"{'single p50 ms':>13} | {'single p95 ms':>13} | {'cpu p50 ms':>10}"
    )
    print(header)
    print("-" * len(header))
    for precision in args.precision:
        for threads in args.threads:
            row = await measure(precision, threads, args.sentences, args.queries, args.repeats, args.batch_size)
            print(
                f"{precision:>9} | {threads:>7} | {row['load_s']:>6.2f} | {row['throughput']:>12.0f} | "
                f"{row['cpu_throughput']:>10.0f} | {row['p50_ms']:>13.2f} | {row['p95_ms']:>13.2f} | "
                f"{row['cpu_p50_ms']:>10.2f}"
            )
    print("targets: >= 400 sentences/s batched, <= 5 ms per single query")


if __name__ == "__main__":
    anyio.run(main)
