"""A reranker for Cohere-compatible ``/v2/rerank`` services: Cohere, vLLM, Jina-style servers, Infinity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from milvus_rerank.rerankers.http.client import HTTPReranker
from milvus_rerank.rerankers.http.options import HTTPOptions, Unpack
from milvus_rerank.validation import check_int

if TYPE_CHECKING:
    from pymilvus import Function

__all__ = ["CohereReranker", "build_cohere_payload"]


def build_cohere_payload(
    query: str,
    documents: Sequence[str],
    *,
    model: str | None,
    top_n: int | None,
    max_tokens_per_doc: int | None,
) -> dict[str, Any]:
    """The body of ``POST /v2/rerank`` for one batch (pure); ``top_n`` only when set (Infinity refuses 0)."""
    payload: dict[str, Any] = {"query": query, "documents": list(documents)}
    if model is not None:
        payload["model"] = model
    if top_n is not None:
        payload["top_n"] = top_n
    if max_tokens_per_doc is not None:
        payload["max_tokens_per_doc"] = max_tokens_per_doc
    return payload


class CohereReranker(HTTPReranker):
    """Rerank with a Cohere v2-compatible service.

    Speaks Cohere's ``/v2/rerank`` request and accepts the response shapes of Cohere
    (``{"results": [{"index", "relevance_score"}]}``), Jina and vLLM (the same, with echoed
    documents) and Infinity (``document`` as a string). Batching (default 64 documents),
    concurrency and retries are those of every HTTP reranker, and so are the options not listed
    here: see :class:`~milvus_rerank.rerankers.http.HTTPReranker`.

    LLM rerankers: the query and documents go as they are (Cohere's own models need nothing
    else), so this reranker has no ``prompt_format``. Behind a vLLM server (``/v2/rerank``), an
    LLM reranker such as Qwen3-Reranker ranks at random unless the server applies its prompt
    (``--chat-template``); its instruction can then go as ``extra_body={"instruction": ...}``.
    To wrap the texts on the client instead, use :class:`~milvus_rerank.VLLMReranker` with
    ``prompt_format=`` (vLLM answers on ``/v2/rerank`` too).

    Args:
        endpoint: A base URL (``/v2/rerank`` is appended) or a full URL such as Infinity's
            ``http://host:7997/rerank``; defaults to Cohere's API.
        model: Model name; Cohere requires it, vLLM and Infinity accept requests without it.
        max_tokens_per_doc: Cohere's per-document token cap (ignored by servers that lack it).
    """

    default_route = "/v2/rerank"
    default_batch_size = 64

    def __init__(
        self,
        endpoint: str = "https://api.cohere.com",
        *,
        model: str | None = None,
        max_tokens_per_doc: int | None = None,
        **options: Unpack[HTTPOptions],
    ) -> None:
        """Check and keep the options (described on the class); no request is made yet."""
        super().__init__(endpoint, model=model, **options)
        self.max_tokens_per_doc = check_int(max_tokens_per_doc, "max_tokens_per_doc", optional=True)

    def _build_payload(self, query: str, documents: Sequence[str], top_n: int | None) -> dict[str, Any]:
        return build_cohere_payload(
            query, documents, model=self.model, top_n=top_n, max_tokens_per_doc=self.max_tokens_per_doc
        )

    def to_milvus_function(
        self,
        queries: str | Sequence[str],
        *,
        input_field: str = "text",
        name: str = "cohere_semantic_ranker",
        target: Literal["lite", "server"] = "lite",
        include_api_key: bool = False,
        credential: str | None = None,
    ) -> Function:
        """The Milvus model-ranker ``Function`` (provider ``cohere``) that calls this service.

        ``target="lite"`` (the default) is for Milvus Lite 3.x, whose only model-ranker provider is
        ``cohere``; it carries this reranker's URL and model. Milvus Lite insists on a key: with
        no ``api_key`` here the Function carries a harmless placeholder; with one, the key goes
        into the Function only if ``include_api_key=True`` (the Function's params then hold the
        secret: do not log them), otherwise Milvus Lite reads ``COHERE_API_KEY`` from the
        environment. ``target="server"`` is for a Milvus 2.6 server, which takes the URL from
        ``milvus.yaml`` and the key from a ``credential`` label. Both need the reranker made with
        ``model=``: Milvus sends a model name with every request, and a server serving another
        one (vLLM) would fail every search with a 404 from inside Milvus. The details are at
        :func:`~milvus_rerank.milvus.functions.cohere_ranker`.

        Args:
            queries: One query string per search query (``nq`` of the search).
            input_field: The single VARCHAR field whose text is reranked.
            name: Name of the function.
            target: ``"lite"`` or ``"server"``, see above.
            include_api_key: Put this reranker's API key into the Function (``target="lite"`` only).
            credential: Name of a credential in ``milvus.yaml`` (``target="server"`` only).

        Returns:
            A ``pymilvus.Function`` of type ``RERANK``.

        Raises:
            TypeError: A wrong argument type.
            ValueError: No query, an empty query, an invalid field name or target, a key that
                Milvus Lite could not find, or a reranker made without ``model=``.
        """
        # Imported here: a reranker that is never exported does not load the Milvus package.
        from milvus_rerank.milvus.functions import cohere_ranker

        return cohere_ranker(
            queries,
            rerank_url=self.endpoint.rerank_url,
            input_field=input_field,
            name=name,
            target=target,
            model=self.model,
            max_client_batch_size=self._batch_size or self.default_batch_size,
            max_tokens_per_doc=self.max_tokens_per_doc,
            api_key=self._api_key,
            include_api_key=include_api_key,
            credential=credential,
        )
