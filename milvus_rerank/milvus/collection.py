"""Create the common RAG collection and fill it.

The collection :func:`create_rag_collection` makes holds, per chunk: a primary key, the text
(with an analyzer, so Milvus can run BM25 on it), a dense vector, and a sparse vector that a
Milvus BM25 function computes from the text on insert. Metadata goes into dynamic fields, so each
key is filterable by name (``source == "faq"``). :func:`ingest` embeds documents in batches and
upserts them by id, so running it twice leaves the collection as after once, then flushes so
that search is fast at once (Milvus Lite searches unflushed rows an order of magnitude slower).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from typing import TYPE_CHECKING, Any, Literal

from milvus_rerank.chunking import Chunk
from milvus_rerank.errors import CollectionNotFoundError, RetrievalError, SchemaError
from milvus_rerank.milvus.embeddings import as_document_embedder, as_sparse_document_encoder
from milvus_rerank.milvus.schema import bm25_sources
from milvus_rerank.validation import check_encodable, check_int

if TYPE_CHECKING:
    from pymilvus import MilvusClient

__all__ = ["DEFAULT_ANALYZER", "Document", "create_rag_collection", "ingest"]

DEFAULT_ANALYZER: dict[str, Any] = {"type": "standard"}
"""Milvus's standard analyzer (Unicode word tokenizer, lowercase): the same on Milvus Lite and on a server.

Milvus Lite knows only the ``standard`` and ``jieba`` tokenizers and ignores stemmer and stop-word
filters; on a server, ``{"type": "english"}`` adds both."""

Document = Chunk | tuple[Any, str] | tuple[Any, str, Mapping[str, Any]] | Mapping[str, Any]
"""One document to ingest: a :class:`~milvus_rerank.chunking.Chunk`, ``(id, text)``, ``(id, text, metadata)`` or
``{"id", "text", "metadata"?}``."""


def create_rag_collection(
    client: MilvusClient,
    collection_name: str,
    *,
    dim: int,
    id_type: Literal["varchar", "int64"] = "varchar",
    id_field: str = "id",
    text_field: str = "text",
    dense_field: str = "dense",
    sparse_field: str = "sparse",
    metric_type: Literal["COSINE", "IP", "L2"] = "COSINE",
    analyzer_params: Mapping[str, Any] | None = None,
    max_text_length: int = 65535,
    max_id_length: int = 512,
    hnsw_m: int = 16,
    hnsw_ef_construction: int = 200,
    bm25_k1: float = 1.2,
    bm25_b: float = 0.75,
    exist_ok: bool = False,
) -> None:
    """Create a collection for hybrid RAG retrieval, with its indexes, and load it.

    Fields: ``id_field`` (primary key, not auto-generated), ``text_field`` (VARCHAR with an
    analyzer), ``dense_field`` (FLOAT_VECTOR of ``dim``), ``sparse_field`` (filled by a BM25
    function from the text). Dynamic fields are on, for metadata. Indexes: HNSW on the dense
    field (fast on Milvus Lite and on a server; ``AUTOINDEX`` is several times slower on Lite) and
    a sparse inverted index with BM25 on the sparse field.

    Args:
        client: A ``pymilvus.MilvusClient``.
        collection_name: Name of the new collection.
        dim: Dimension of the dense embedding (384 for all-MiniLM-L6-v2).
        id_type: ``"varchar"`` (string ids) or ``"int64"``.
        id_field: Name of the primary key field.
        text_field: Name of the text field.
        dense_field: Name of the dense vector field.
        sparse_field: Name of the BM25 sparse vector field.
        metric_type: Dense metric: ``"COSINE"`` (default), ``"IP"`` or ``"L2"``.
        analyzer_params: Milvus analyzer for the text; default :data:`DEFAULT_ANALYZER`.
            Milvus Lite offers the ``standard`` and ``jieba`` tokenizers.
        max_text_length: Longest text in bytes (Milvus's VARCHAR limit is 65,535).
        max_id_length: Longest string id in bytes.
        hnsw_m: HNSW graph degree.
        hnsw_ef_construction: HNSW build-time beam width.
        bm25_k1: BM25 term-frequency saturation.
        bm25_b: BM25 length normalisation.
        exist_ok: Return quietly when the collection exists (its schema is not checked);
            otherwise that is an error.

    Raises:
        ValueError: A bad argument, or the collection exists and ``exist_ok`` is false.
        RetrievalError: Milvus refused to create the collection.
    """
    from pymilvus import DataType, Function, FunctionType

    check_int(dim, "dim")
    if id_type not in ("varchar", "int64"):
        raise ValueError(f"id_type must be 'varchar' or 'int64', got {id_type!r}")
    if metric_type not in ("COSINE", "IP", "L2"):
        raise ValueError(f"metric_type must be 'COSINE', 'IP' or 'L2', got {metric_type!r}")
    names = [id_field, text_field, dense_field, sparse_field]
    if len(set(names)) != len(names):
        raise ValueError(f"field names must differ, got {names}")
    try:
        if client.has_collection(collection_name):
            if exist_ok:
                return
            raise ValueError(
                f"collection {collection_name!r} already exists: pass exist_ok=True to reuse it, "
                "or drop it first (client.drop_collection)"
            )
        schema = client.create_schema(auto_id=False, enable_dynamic_field=True)
        if id_type == "int64":
            schema.add_field(id_field, DataType.INT64, is_primary=True)
        else:
            schema.add_field(id_field, DataType.VARCHAR, is_primary=True, max_length=max_id_length)
        schema.add_field(
            text_field,
            DataType.VARCHAR,
            max_length=max_text_length,
            enable_analyzer=True,
            analyzer_params=dict(analyzer_params if analyzer_params is not None else DEFAULT_ANALYZER),
        )
        schema.add_field(dense_field, DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field(sparse_field, DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(
                name=f"{sparse_field}_bm25",
                function_type=FunctionType.BM25,
                input_field_names=[text_field],
                output_field_names=[sparse_field],
            )
        )
        index_params = client.prepare_index_params()
        index_params.add_index(
            field_name=dense_field,
            index_type="HNSW",
            metric_type=metric_type,
            params={"M": hnsw_m, "efConstruction": hnsw_ef_construction},
        )
        index_params.add_index(
            field_name=sparse_field,
            index_type="SPARSE_INVERTED_INDEX",
            metric_type="BM25",
            params={"bm25_k1": bm25_k1, "bm25_b": bm25_b},
        )
        client.create_collection(collection_name, schema=schema, index_params=index_params)
    except ValueError:
        raise
    except Exception as exc:
        message = str(getattr(exc, "message", "") or exc)
        raise RetrievalError(f"cannot create collection {collection_name!r}: {message}") from exc


def ingest(
    client: MilvusClient,
    collection_name: str,
    documents: Iterable[Document],
    *,
    embedding: object,
    sparse_embedding: object = None,
    text_field: str = "text",
    dense_field: str = "dense",
    sparse_field: str = "sparse",
    batch_size: int = 64,
    show_progress: bool = True,
    flush: bool = True,
) -> int:
    """Embed documents and upsert them by id, in batches; flush at the end.

    Re-ingesting the same ids replaces those rows, so running an ingest twice is harmless.
    Within one batch the last occurrence of an id wins. When ``documents`` is a sequence (a
    list of chunks), every document is checked before the first one is embedded, so a bad one
    fails the call before any work is done and nothing is written.

    Args:
        client: A ``pymilvus.MilvusClient``.
        collection_name: The collection, e.g. made by :func:`create_rag_collection`. Its
            primary key must not be auto-generated.
        documents: :class:`~milvus_rerank.chunking.Chunk` values, ``(id, text)``,
            ``(id, text, metadata)`` or mappings with ``id``, ``text`` and optionally
            ``metadata``. Metadata keys become fields (dynamic fields in our collection) and
            must not clash with the schema's own fields.
        embedding: Dense embedding for the documents: a callable ``str -> list[float]``, a
            LangChain ``Embeddings``, a LlamaIndex embedding or a sentence-transformers model.
        sparse_embedding: Sparse document encoder, only when ``sparse_field`` is not filled by a
            BM25 function.
        text_field: The text field.
        dense_field: The dense vector field.
        sparse_field: The sparse vector field.
        batch_size: Documents embedded and upserted per call.
        show_progress: Show a tqdm progress bar (on stderr).
        flush: Flush the collection at the end (seal the new rows so search is fast at once).

    Returns:
        The number of documents upserted (duplicates within a batch counted once).

    Raises:
        CollectionNotFoundError: The collection does not exist.
        SchemaError: A named field is missing, the key is auto-generated, or the embedding's
            dimension does not match the dense field.
        TypeError: A document or an id has the wrong shape or type.
        ValueError: A metadata key clashes with a schema field, a text is longer than the text
            field's ``max_length``, or a bad argument.
        RetrievalError: Milvus refused an upsert or the flush.
    """
    from tqdm.auto import tqdm

    check_int(batch_size, "batch_size")
    layout = _describe_for_ingest(client, collection_name, text_field, dense_field, sparse_field)
    embed = as_document_embedder(embedding)
    encode_sparse = None
    if not layout["sparse_is_bm25"] and layout["has_sparse"]:
        if sparse_embedding is None:
            raise ValueError(
                f"sparse field {sparse_field!r} of collection {collection_name!r} is not filled by a BM25 function: "
                "pass sparse_embedding= to encode the documents"
            )
        encode_sparse = as_sparse_document_encoder(sparse_embedding)

    total = len(documents) if isinstance(documents, Sized) else None
    batches: Iterable[tuple[int, list[dict[str, Any]]]] = (
        (len(batch), _rows(batch, layout, collection_name, text_field)) for batch in _batches(documents, batch_size)
    )
    if isinstance(documents, Sequence):
        # Every document is checked (types, metadata keys, text length) before the first is embedded:
        # a mistake in the last one must not surface after minutes of embedding, half ingested.
        batches = list(batches)
    count = 0
    with tqdm(total=total, unit="chunk", desc=f"ingest {collection_name}", disable=not show_progress) as progress:
        for size, rows in batches:
            texts = [row[text_field] for row in rows]
            vectors = embed(texts)
            for row, vector in zip(rows, vectors, strict=True):
                if len(vector) != layout["dim"]:
                    raise SchemaError(
                        f"the embedding returned {len(vector)}-dimensional vectors but field {dense_field!r} of "
                        f"collection {collection_name!r} holds {layout['dim']}-dimensional vectors"
                    )
                row[dense_field] = vector
            if encode_sparse is not None:
                for row, sparse in zip(rows, encode_sparse(texts), strict=True):
                    row[sparse_field] = sparse
            try:
                client.upsert(collection_name, rows)
            except Exception as exc:
                message = str(getattr(exc, "message", "") or exc)
                raise RetrievalError(f"upsert into collection {collection_name!r} failed: {message}") from exc
            count += len(rows)
            progress.update(size)
    if flush:
        try:
            client.flush(collection_name)
        except Exception as exc:
            message = str(getattr(exc, "message", "") or exc)
            raise RetrievalError(f"flush of collection {collection_name!r} failed: {message}") from exc
    return count


def _describe_for_ingest(
    client: MilvusClient, collection_name: str, text_field: str, dense_field: str, sparse_field: str
) -> dict[str, Any]:
    from pymilvus import DataType

    try:
        exists = client.has_collection(collection_name)
        description = client.describe_collection(collection_name) if exists else None
    except Exception as exc:
        message = str(getattr(exc, "message", "") or exc)
        raise RetrievalError(f"cannot describe collection {collection_name!r}: {message}") from exc
    if description is None:
        raise CollectionNotFoundError(
            f"collection {collection_name!r} does not exist: create it first (create_rag_collection)"
        )
    fields = {field["name"]: field for field in description["fields"]}
    primary = next(field for field in fields.values() if field.get("is_primary"))
    if primary.get("auto_id") or description.get("auto_id"):
        raise SchemaError(
            f"collection {collection_name!r} generates its primary keys (auto_id): ingest upserts by your ids, "
            "so it needs a collection with auto_id=False"
        )
    for name, role in ((text_field, "text_field"), (dense_field, "dense_field")):
        if name not in fields:
            raise SchemaError(
                f"collection {collection_name!r} has no field {name!r} (wanted as {role}); its fields are "
                f"{sorted(fields)}"
            )
    if fields[dense_field]["type"] != DataType.FLOAT_VECTOR:
        raise SchemaError(f"field {dense_field!r} of collection {collection_name!r} is not a FLOAT_VECTOR")
    max_length = fields[text_field].get("params", {}).get("max_length")
    return {
        "primary": primary["name"],
        "int_key": primary["type"] == DataType.INT64,
        "max_text_length": int(max_length) if max_length is not None else None,
        "dim": int(fields[dense_field]["params"]["dim"]),
        "has_sparse": sparse_field in fields,
        "sparse_is_bm25": sparse_field in bm25_sources(description),
        "reserved": set(fields),
    }


def _batches(documents: Iterable[Document], size: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    for document in documents:
        batch.append(document)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _rows(batch: Sequence[Document], layout: Mapping[str, Any], collection_name: str, text_field: str) -> list[dict]:
    rows: dict[Any, dict[str, Any]] = {}
    for document in batch:
        doc_id, text, metadata = _unpack(document)
        if layout["int_key"]:
            if isinstance(doc_id, bool) or not isinstance(doc_id, int):
                raise TypeError(
                    f"collection {collection_name!r} has an INT64 primary key; got id {doc_id!r} "
                    f"({type(doc_id).__name__})"
                )
        elif not isinstance(doc_id, str):
            raise TypeError(
                f"collection {collection_name!r} has a VARCHAR primary key; got id {doc_id!r} "
                f"({type(doc_id).__name__}): pass str ids"
            )
        if not isinstance(text, str):
            raise TypeError(f"text of document {doc_id!r} must be a str, got {type(text).__name__}")
        # pymilvus would fail with "The Input data type is inconsistent", naming no document.
        check_encodable(text, f"text of document {doc_id!r}")
        limit = layout["max_text_length"]
        # Milvus Lite counts a VARCHAR's length in characters (measured: 100 "é" fit max_length=100).
        if limit is not None and len(text) > limit:
            raise ValueError(
                f"text of document {doc_id!r} has {len(text)} characters, but field {text_field!r} of collection "
                f"{collection_name!r} holds at most {limit}: cut it into chunks of at most {limit} characters"
            )
        clash = layout["reserved"].intersection(metadata)
        if clash:
            raise ValueError(
                f"metadata of document {doc_id!r} uses keys {sorted(clash)} that are fields of collection "
                f"{collection_name!r}; rename them"
            )
        rows.pop(doc_id, None)  # the last occurrence wins, and keeps its place at the end
        rows[doc_id] = {**metadata, layout["primary"]: doc_id, text_field: text}
    return list(rows.values())


def _unpack(document: Document) -> tuple[Any, Any, Mapping[str, Any]]:
    if isinstance(document, Chunk):
        doc_id, text, metadata = document.id, document.text, document.metadata
    elif isinstance(document, Mapping):
        if "id" not in document or "text" not in document:
            raise TypeError(f"a document mapping needs 'id' and 'text' keys, got keys {sorted(document)}")
        metadata = document.get("metadata") or {}
        doc_id, text = document["id"], document["text"]
    elif isinstance(document, tuple) and len(document) in (2, 3):
        doc_id, text = document[0], document[1]
        metadata = document[2] if len(document) == 3 and document[2] is not None else {}
    else:
        raise TypeError(
            f"each document must be a Chunk, (id, text), (id, text, metadata) or a mapping with id/text/metadata, "
            f"got {type(document).__name__}"
        )
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata of document {doc_id!r} must be a mapping, got {type(metadata).__name__}")
    return doc_id, text, metadata
