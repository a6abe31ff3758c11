"""Milvus rerank ``Function`` builders: the model rankers a Milvus server runs itself.

A model ranker (``FunctionType.RERANK``, ``params["reranker"] == "model"``) makes Milvus call a
rerank service during ``search`` / ``hybrid_search`` and use the returned score as each hit's
distance. :func:`vllm_ranker`, :func:`tei_ranker`, :func:`cohere_ranker` and :func:`voyage_ranker`
build the one for each provider Milvus knows, from plain values;
:func:`milvus_rerank.milvus.export.model_ranker` picks the builder for an HTTP reranker's
description. Nothing here imports the rerankers, and they do not import this. What Milvus sends
to each provider, and which of a reranker's settings it cannot carry over (each builder warns
about those): docs/server-side-rerank.md. pymilvus is imported where a ``Function`` is built.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from types import FrameType

    from pymilvus import Function

__all__ = [
    "check_function_args",
    "cohere_ranker",
    "milvus_endpoint",
    "model_ranker_function",
    "tei_ranker",
    "vllm_ranker",
    "voyage_ranker",
]

_PLACEHOLDER_KEY = "no-key"  # Milvus Lite refuses a cohere ranker without a key, even for a keyless server


# -- builders, one per provider ----------------------------------------------------------------


def vllm_ranker(
    queries: str | Sequence[str],
    *,
    base_url: str,
    input_field: str | Sequence[str],
    name: str,
    max_client_batch_size: int,
    truncate_prompt_tokens: int | None = None,
    credential: str | None = None,
    has_api_key: bool = False,
    raw_scores: bool = False,
    prompt_format: str | None = None,
    has_instruction: bool = False,
) -> Function:
    """The model ranker with which a Milvus 2.6 server calls a vLLM rerank service.

    Milvus Lite has no ``vllm`` provider: use :func:`cohere_ranker` there. Milvus sends no
    ``model`` and no instruction (an LLM reranker needs a server with ``--chat-template``): see
    docs/server-side-rerank.md.

    Args:
        queries: One query string per search query (``nq`` of the search).
        base_url: The service's ``scheme://host[:port][/prefix]``; only scheme, host and port reach
            Milvus (see :func:`milvus_endpoint`).
        input_field: The single VARCHAR field whose text is reranked.
        name: Name of the function.
        max_client_batch_size: Documents per request Milvus sends.
        truncate_prompt_tokens: vLLM's per-pair truncation, passed on when set.
        credential: Name of a credential defined in ``milvus.yaml`` holding the API key.
        has_api_key: Whether the caller holds a key for the service (a warning then asks for
            ``credential``: Milvus never takes a raw key in a Function).
        raw_scores: Whether the caller asked for raw logits, which Milvus cannot (a warning says so).
        prompt_format: The name of the LLM prompt format the caller wraps texts in (``"custom"``
            for its own templates), which Milvus cannot apply (a warning says so).
        has_instruction: Whether the caller sends an instruction, which Milvus cannot (a warning
            says so).

    Returns:
        A ``pymilvus.Function`` of type ``RERANK``.

    Raises:
        TypeError: A wrong argument type.
        ValueError: No query, an empty query, or an invalid field name.
    """
    fields: dict[str, Any] = {}
    if truncate_prompt_tokens is not None:
        fields["truncate_prompt_tokens"] = truncate_prompt_tokens
    function = _server_ranker(
        "vllm",
        queries,
        input_field=input_field,
        name=name,
        endpoint=milvus_endpoint(base_url),
        max_client_batch_size=max_client_batch_size,
        fields=fields,
        credential=credential,
        has_api_key=has_api_key,
        raw_scores=raw_scores,
    )
    _warn_unwrapped_texts(prompt_format, has_instruction=has_instruction)
    return function


def _warn_unwrapped_texts(prompt_format: str | None, *, has_instruction: bool) -> None:
    """Warn that Milvus sends an LLM reranker's texts without the prompt or instruction the caller uses."""
    if prompt_format is not None:
        warnings.warn(
            f"Milvus sends the raw query and documents, without the {prompt_format!r} prompt format: an LLM "
            "reranker ranks them at random unless the vLLM server wraps them itself; start it with "
            "--chat-template (the matching template) for server-side reranking",
            UserWarning,
            stacklevel=_caller_stacklevel(),
        )
    if has_instruction:
        warnings.warn(
            "Milvus sends no instruction: the server's chat template uses its default one, so scores differ "
            "from this reranker's",
            UserWarning,
            stacklevel=_caller_stacklevel(),
        )


def tei_ranker(
    queries: str | Sequence[str],
    *,
    base_url: str,
    input_field: str | Sequence[str],
    name: str,
    max_client_batch_size: int,
    truncate: bool = False,
    truncation_direction: str | None = None,
    credential: str | None = None,
    has_api_key: bool = False,
    raw_scores: bool = False,
) -> Function:
    """The model ranker with which a Milvus 2.6 server calls a text-embeddings-inference service.

    Milvus Lite has no ``tei`` provider: use :func:`cohere_ranker` there.

    Args:
        queries: One query string per search query (``nq`` of the search).
        base_url: The service's ``scheme://host[:port][/prefix]``, as for :func:`vllm_ranker`.
        input_field: The single VARCHAR field whose text is reranked.
        name: Name of the function.
        max_client_batch_size: Texts per request Milvus sends.
        truncate: Whether TEI truncates over-long inputs, passed on when true.
        truncation_direction: ``"Left"`` or ``"Right"``, passed on when set.
        credential: Name of a credential defined in ``milvus.yaml`` holding the API key.
        has_api_key: As for :func:`vllm_ranker`.
        raw_scores: As for :func:`vllm_ranker`.

    Returns:
        A ``pymilvus.Function`` of type ``RERANK``.

    Raises:
        TypeError: A wrong argument type.
        ValueError: No query, an empty query, or an invalid field name.
    """
    fields: dict[str, Any] = {}
    if truncate:
        fields["truncate"] = True
    if truncation_direction is not None:
        fields["truncation_direction"] = truncation_direction
    return _server_ranker(
        "tei",
        queries,
        input_field=input_field,
        name=name,
        endpoint=milvus_endpoint(base_url),
        max_client_batch_size=max_client_batch_size,
        fields=fields,
        credential=credential,
        has_api_key=has_api_key,
        raw_scores=raw_scores,
    )


def cohere_ranker(
    queries: str | Sequence[str],
    *,
    rerank_url: str,
    input_field: str | Sequence[str],
    name: str,
    target: Literal["lite", "server"] = "lite",
    model: str | None,
    max_client_batch_size: int,
    max_tokens_per_doc: int | None = None,
    api_key: str | None = None,
    include_api_key: bool = False,
    credential: str | None = None,
) -> Function:
    """The model ranker (provider ``cohere``) that calls a Cohere-compatible rerank service.

    ``target="lite"`` is for Milvus Lite, whose only model-ranker provider is ``cohere``: the
    Function carries ``rerank_url`` minus ``/rerank``, the model and a key (a placeholder when
    there is none; ``COHERE_API_KEY`` is read by Lite unless ``include_api_key``).
    ``target="server"`` is for a Milvus 2.6 server, which takes the URL from ``milvus.yaml`` and
    the key from a ``credential`` label. Milvus always sends a model name, so ``model`` is
    required. What Milvus sends: docs/server-side-rerank.md.

    Args:
        queries: One query string per search query (``nq`` of the search).
        rerank_url: The full URL the service answers rerank requests on.
        input_field: The single VARCHAR field whose text is reranked.
        name: Name of the function.
        target: ``"lite"`` or ``"server"``.
        model: The model name sent to the service; ``None`` is refused.
        max_client_batch_size: Documents per request a Milvus server sends (``target="server"``).
        max_tokens_per_doc: Cohere's per-document token cap, passed on when set (``target="server"``).
        api_key: The caller's key for the service, if any.
        include_api_key: Put ``api_key`` into the Function (``target="lite"`` only).
        credential: Name of a credential in ``milvus.yaml`` (``target="server"`` only).

    Returns:
        A ``pymilvus.Function`` of type ``RERANK``.

    Raises:
        TypeError: A wrong argument type.
        ValueError: No query, an empty query, an invalid field name or target, a key that
            Milvus Lite could not find, or no model.
    """
    if target in ("lite", "server") and model is None:
        raise ValueError(
            "the Function needs the model's name, which Milvus sends with every request (a server serving "
            "another model answers 404 inside every search): create the reranker with model='<served name>' "
            "(a vLLM server lists it at /v1/models)"
        )
    if target == "lite":
        query_list, field = check_function_args(queries, input_field)
        if credential is not None:
            raise ValueError("credential= is for target='server'; Milvus Lite takes the key itself")
        route = "/rerank"
        if not rerank_url.endswith(route):
            raise ValueError(
                f"Milvus Lite posts to '<base_url>/rerank', which cannot reach the route "
                f"{urlsplit(rerank_url).path!r}: point the reranker at a URL ending in /rerank"
            )
        params: dict[str, Any] = {
            "reranker": "model",
            "provider": "cohere",
            "queries": query_list,
            "model_name": model,
            "base_url": rerank_url[: -len(route)],
        }
        if api_key is None:
            params["api_key"] = _PLACEHOLDER_KEY
        elif include_api_key:
            params["api_key"] = api_key
        elif os.environ.get("COHERE_API_KEY", "").strip() != api_key:
            raise ValueError(
                "this reranker has an api_key, which Milvus Lite reads from COHERE_API_KEY, and that variable "
                "holds another key or none: pass include_api_key=True (the Function's params then hold the key) "
                "or set COHERE_API_KEY to the reranker's key"
            )
        return model_ranker_function(name, field, params)
    if target == "server":
        if include_api_key:
            raise ValueError("a Milvus server never takes a raw key: pass credential='<name from milvus.yaml>'")
        fields: dict[str, Any] = {"model_name": model}
        if max_tokens_per_doc is not None:
            fields["max_tokens_per_doc"] = max_tokens_per_doc
        function = _server_ranker(
            "cohere",
            queries,
            input_field=input_field,
            name=name,
            endpoint=None,
            max_client_batch_size=max_client_batch_size,
            fields=fields,
            credential=credential,
            has_api_key=api_key is not None,
        )
        warnings.warn(
            "a Milvus server calls the cohere URL set in milvus.yaml "
            "(function.rerank.model.providers.cohere.url), not this reranker's endpoint",
            UserWarning,
            stacklevel=_caller_stacklevel(),
        )
        return function
    raise ValueError(f"target must be 'lite' or 'server', got {target!r}")


def voyage_ranker(
    queries: str | Sequence[str],
    *,
    input_field: str | Sequence[str],
    name: str,
    model: str,
    max_client_batch_size: int,
    truncation: bool | None = None,
    credential: str | None = None,
    has_api_key: bool = False,
    rerank_url: str | None = None,
) -> Function:
    """The model ranker (provider ``voyageai``) with which a Milvus 2.6 server calls Voyage AI.

    The server calls the ``voyageai`` URL of its ``milvus.yaml`` with the key of the
    ``credential`` label (or its own ``VOYAGE_API_KEY``); a raw key never goes into the Function.
    Milvus Lite has no ``voyageai`` provider. What Milvus sends: docs/server-side-rerank.md.

    Args:
        queries: One query string per search query (``nq`` of the search).
        input_field: The single VARCHAR field whose text is reranked.
        name: Name of the function.
        model: The Voyage reranker (``rerank-2.5``).
        max_client_batch_size: Documents per request the server sends.
        truncation: Voyage's ``truncation`` flag, passed on when set.
        credential: Name of a credential defined in ``milvus.yaml`` holding the key.
        has_api_key: Whether the caller holds a key (a warning then says how the server gets one).
        rerank_url: The URL the caller reranks on; a warning says so when it is not Voyage's.

    Returns:
        A ``pymilvus.Function`` of type ``RERANK``.

    Raises:
        TypeError: A wrong argument type.
        ValueError: No query, an empty query, an invalid field name, or no model.
    """
    if not isinstance(model, str) or not model:
        raise ValueError(f"model must name a Voyage reranker such as 'rerank-2.5', got {model!r}")
    fields: dict[str, Any] = {"model_name": model}
    if truncation is not None:
        fields["truncation"] = truncation
    function = _server_ranker(
        "voyageai",
        queries,
        input_field=input_field,
        name=name,
        endpoint=None,
        max_client_batch_size=max_client_batch_size,
        fields=fields,
        credential=credential,
        has_api_key=has_api_key,
        key_variable="VOYAGE_API_KEY",
    )
    if rerank_url is not None and urlsplit(rerank_url).hostname != "api.voyageai.com":
        warnings.warn(
            "a Milvus server calls the voyageai URL set in milvus.yaml "
            "(function.rerank.model.providers.voyageai.url), not this reranker's endpoint",
            UserWarning,
            stacklevel=_caller_stacklevel(),
        )
    return function


# -- the parts every provider shares -------------------------------------------------------------


def _server_ranker(
    provider: str,
    queries: str | Sequence[str],
    *,
    input_field: str | Sequence[str],
    name: str,
    endpoint: str | None,
    max_client_batch_size: int,
    fields: Mapping[str, Any],
    credential: str | None,
    has_api_key: bool,
    raw_scores: bool = False,
    key_variable: str | None = None,
) -> Function:
    """The model ranker for a Milvus 2.6 server: the params every provider shares, then ``fields``.

    ``endpoint`` is left out when the provider's URL comes from ``milvus.yaml``; ``key_variable``
    names the variable a server reads the provider's key from when no ``credential`` is given.
    """
    query_list, field = check_function_args(queries, input_field)
    params: dict[str, Any] = {"reranker": "model", "provider": provider, "queries": query_list}
    if endpoint is not None:
        params["endpoint"] = endpoint
    params["max_client_batch_size"] = max_client_batch_size
    params.update(fields)
    if credential is not None:
        params["credential"] = credential
    elif has_api_key:
        fallback = f" (or set {key_variable} where the Milvus server runs)" if key_variable else ""
        warnings.warn(
            "this reranker has an api_key, but a Milvus server takes keys only as a credential defined in "
            f"milvus.yaml: pass credential='<name>'{fallback}",
            UserWarning,
            stacklevel=_caller_stacklevel(),
        )
    if raw_scores:
        warnings.warn(
            f"Milvus asks {provider} for activated scores; raw_scores=True is not carried over",
            UserWarning,
            stacklevel=_caller_stacklevel(),
        )
    return model_ranker_function(name, field, params)


def check_function_args(queries: str | Sequence[str], input_field: str | Sequence[str]) -> tuple[list[str], str]:
    """Validate the queries and the text field of a model-ranker ``Function``.

    Args:
        queries: One non-empty query string per search query (a bare string is one query).
        input_field: The one VARCHAR field to rerank on (a one-element list is accepted).

    Returns:
        The queries as a list and the field name.

    Raises:
        TypeError: A query or the field is not a string.
        ValueError: No query, an empty query, or not exactly one non-empty field name.
    """
    query_list = [queries] if isinstance(queries, str) else list(queries)
    if not query_list:
        raise ValueError("queries must hold one query string per search query; got none")
    for position, query in enumerate(query_list):
        if not isinstance(query, str):
            raise TypeError(f"queries[{position}] must be a str, got {type(query).__name__}")
        if not query.strip():
            raise ValueError(f"queries[{position}] is empty; Milvus needs the text of every search query")
    fields = [input_field] if isinstance(input_field, str) else list(input_field)
    if len(fields) != 1:
        raise ValueError(f"a model ranker reranks on exactly one VARCHAR field, got {fields!r}")
    field = fields[0]
    if not isinstance(field, str) or not field:
        raise ValueError(f"input_field must be a non-empty field name, got {field!r}")
    return query_list, field


def milvus_endpoint(base_url: str) -> str:
    """``scheme://host:port`` (the port made explicit) for a model ranker's ``endpoint`` param.

    Milvus replaces the path with ``/rerank``, so a service behind a path prefix cannot be reached
    that way: this warns when ``base_url`` has one.
    """
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    origin = f"{parts.scheme}://{host}:{port}"
    prefix = parts.path.strip("/")
    if prefix:
        warnings.warn(
            f"Milvus posts to {origin}/rerank: the path prefix '/{prefix}' of the endpoint is dropped; "
            "serve the reranker at the root of a host:port that the Milvus server can reach",
            UserWarning,
            stacklevel=_caller_stacklevel(),
        )
    return origin


def model_ranker_function(name: str, input_field: str, params: dict[str, Any]) -> Function:
    """A ``pymilvus.Function`` of type ``RERANK`` with the given params."""
    from pymilvus import Function, FunctionType

    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty str, got {name!r}")
    return Function(name=name, function_type=FunctionType.RERANK, input_field_names=[input_field], params=params)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning issued by our caller point at the user's line.

    Counts the frames that belong to this package (the builders, a reranker's
    :func:`model_ranker`), so the warning names the first line outside it however the call
    arrived here.
    """
    frame: FrameType | None = sys._getframe(1)  # the function that is about to warn
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("milvus_rerank."):
        frame = frame.f_back
        level += 1
    return level
