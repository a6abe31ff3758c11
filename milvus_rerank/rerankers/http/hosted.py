"""Rerankers of a hosted API (Cohere, Voyage AI, Jina AI): the key may come from the environment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from milvus_rerank.errors import RerankHTTPError
from milvus_rerank.rerankers.http.attempts import http_error
from milvus_rerank.rerankers.http.client import HTTPReranker
from milvus_rerank.rerankers.http.credentials import environment_key, on_hosts
from milvus_rerank.rerankers.http.options import HTTPOptions, Unpack

__all__ = ["HostedReranker"]


class HostedReranker(HTTPReranker):
    """Base of the rerankers whose default endpoint is a provider's API.

    With no ``api_key=``, the key is read from the provider's environment variables, as its own
    SDK and the LangChain partner packages do, but only when the endpoint is the provider's own
    ``https`` host: a key meant for the provider never reaches another server. Everything else
    is :class:`~milvus_rerank.rerankers.http.HTTPReranker`'s.
    """

    provider: ClassVar[str]
    """The provider's name, for messages (``"Voyage AI"``)."""

    api_hosts: ClassVar[tuple[str, ...]]
    """The provider's API hosts, the only ones an environment key is sent to."""

    api_key_variables: ClassVar[tuple[str, ...]]
    """The environment variables read for the key, first set first."""

    def __init__(
        self, endpoint: str | Sequence[str], *, model: str | None = None, **options: Unpack[HTTPOptions]
    ) -> None:
        """Take the key from the environment when none is given and the endpoint is the provider's."""
        self._on_provider = on_hosts(endpoint, self.api_hosts)
        if options.get("api_key") is None:
            key = environment_key(endpoint, hosts=self.api_hosts, variables=self.api_key_variables)
            if key is not None:
                options["api_key"] = key.reveal()
                self._api_key_source = key.source
        super().__init__(endpoint, model=model, **options)

    def _http_error(self, endpoint: str, status: int, message: str, tries: str) -> RerankHTTPError:
        given = self._api_key is not None and self._api_key_source == "api_key"
        if status not in (401, 403) or not self._on_provider or given:
            return super()._http_error(endpoint, status, message, tries)
        variables = " or ".join(f"${name}" for name in self.api_key_variables)
        if self._api_key is None:
            hint = (
                f"; {self.provider} wants an API key: pass api_key=, or set {variables} "
                f"(read only for {', '.join(self.api_hosts)})"
            )
        else:
            hint = f"; the server refused the API key read from ${self._api_key_source}"
        return http_error(endpoint, status, message, tries, hint=hint)
