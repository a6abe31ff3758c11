"""An HTTP reranker's service as a Milvus model ranker: :func:`model_ranker`.

The rerankers describe the service they call as plain data (``reranker.describe()``, a
:class:`~milvus_rerank.rerankers.http.service.RerankService`); this picks the provider's builder in
:mod:`milvus_rerank.milvus.functions` and hands it that description. Nothing here imports the
rerankers (their types only, for the type checker), and they never import this.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol

from milvus_rerank.milvus.functions import cohere_ranker, tei_ranker, vllm_ranker, voyage_ranker

if TYPE_CHECKING:
    from pymilvus import Function

    from milvus_rerank.rerankers.http.service import RerankService

__all__ = ["Describable", "model_ranker"]


def model_ranker(
    reranker: Describable | RerankService,
    queries: str | Sequence[str],
    *,
    input_field: str = "text",
    name: str | None = None,
    target: Literal["lite", "server"] | None = None,
    credential: str | None = None,
    include_api_key: bool = False,
) -> Function:
    """The Milvus model ranker that calls the same service as ``reranker``, for ``search(ranker=...)``.

    It reads ``reranker.describe()`` (a :class:`~milvus_rerank.rerankers.http.service.RerankService`,
    which may also be passed itself) and builds the provider's Function:

    ========================  ===================  =====================================
    reranker                  provider             where
    ========================  ===================  =====================================
    ``VLLMReranker``          ``vllm``             Milvus server (:func:`vllm_ranker`)
    ``TEIReranker``           ``tei``              Milvus server (:func:`tei_ranker`)
    ``CohereReranker``        ``cohere``           Milvus Lite or server (:func:`cohere_ranker`)
    ``JinaReranker``          ``cohere``           Milvus Lite or server (Jina speaks Cohere's request)
    ``VoyageReranker``        ``voyageai``         Milvus server (:func:`voyage_ranker`)
    ========================  ===================  =====================================

    What each provider carries over, and what Milvus leaves out (with a warning):
    docs/server-side-rerank.md.

    Args:
        reranker: An HTTP reranker, or its description.
        queries: One query string per search query (``nq`` of the search).
        input_field: The single VARCHAR field whose text is reranked.
        name: Name of the function; default ``<provider>_semantic_ranker``.
        target: ``"lite"`` or ``"server"`` for the ``cohere`` provider (default ``"lite"``); the
            other providers exist on a Milvus server only, so ``"lite"`` is refused for them.
        credential: Name of a credential in ``milvus.yaml`` holding the key (a Milvus server).
        include_api_key: Put the reranker's key into the Function (Milvus Lite only; its params
            then hold the secret: do not log them).

    Returns:
        A ``pymilvus.Function`` of type ``RERANK``.

    Raises:
        TypeError: ``reranker`` has no description, or a wrong argument type.
        ValueError: A target the provider does not have, or what the builder refuses.
    """
    service = reranker.describe() if hasattr(reranker, "describe") else reranker
    protocol = getattr(service, "protocol", None)
    if protocol not in _PROVIDERS:
        raise TypeError(
            f"model_ranker needs an HTTP reranker of milvus_rerank (or its describe()), got {type(reranker).__name__}"
        )
    provider = _PROVIDERS[protocol]
    label = name if name is not None else f"{protocol}_semantic_ranker"
    options = service.options
    key = service.api_key
    if provider != "cohere" and target == "lite":
        raise ValueError(
            f"Milvus Lite has the cohere provider only, not {provider!r}: use a Milvus server, or rerank on the "
            "client (a Cohere-compatible service, such as vLLM on /v2/rerank, is reachable from Lite through "
            "CohereReranker)"
        )
    if provider != "cohere" and include_api_key:
        raise ValueError("a Milvus server never takes a raw key: pass credential='<name from milvus.yaml>'")
    if protocol == "vllm":
        return vllm_ranker(
            queries,
            base_url=service.base_url,
            input_field=input_field,
            name=label,
            max_client_batch_size=service.batch_size,
            truncate_prompt_tokens=options.get("truncate_prompt_tokens"),
            credential=credential,
            has_api_key=key is not None,
            raw_scores=bool(options.get("raw_scores")),
            prompt_format=options.get("prompt_format"),
            has_instruction=options.get("instruction") is not None,
        )
    if protocol == "tei":
        return tei_ranker(
            queries,
            base_url=service.base_url,
            input_field=input_field,
            name=label,
            max_client_batch_size=service.batch_size,
            truncate=bool(options.get("truncate")),
            truncation_direction=options.get("truncation_direction"),
            credential=credential,
            has_api_key=key is not None,
            raw_scores=bool(options.get("raw_scores")),
        )
    if protocol == "voyage":
        return voyage_ranker(
            queries,
            input_field=input_field,
            name=label,
            model=service.model or "",
            max_client_batch_size=service.batch_size,
            truncation=options.get("truncation"),
            credential=credential,
            has_api_key=key is not None,
            rerank_url=service.rerank_url,
        )
    return cohere_ranker(
        queries,
        rerank_url=service.rerank_url,
        input_field=input_field,
        name=label,
        target=target or "lite",
        model=service.model,
        max_client_batch_size=service.batch_size,
        max_tokens_per_doc=options.get("max_tokens_per_doc"),
        api_key=None if key is None else key.reveal(),
        include_api_key=include_api_key,
        credential=credential,
    )


_PROVIDERS = {"vllm": "vllm", "tei": "tei", "cohere": "cohere", "jina": "cohere", "voyage": "voyageai"}
"""The Milvus provider that calls each reranker protocol's service."""


class Describable(Protocol):
    """Anything that describes its rerank service, as the HTTP rerankers do."""

    def describe(self) -> RerankService:
        """The service, as plain data."""
        ...
