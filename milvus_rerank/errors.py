"""Exceptions raised by milvus-rerank.

Every error the package raises on purpose derives from :class:`MilvusRerankError`. Where an
error has a natural builtin counterpart it subclasses that too, so ``except ValueError`` or
``except TimeoutError`` in user code keeps working::

    MilvusRerankError
    ├── ModelLoadError (OSError)            a local model cannot be found or is not a cross-encoder
    ├── RerankError                         a reranker could not produce scores
    │   ├── RerankHTTPError                 the rerank server answered with an error status
    │   ├── RerankTimeoutError (TimeoutError)        no answer within the timeout or deadline
    │   ├── RerankConnectionError (ConnectionError)  the server could not be reached
    │   └── RerankResponseError (ValueError)         the answer was malformed or inconsistent
    └── RetrievalError                      Milvus retrieval failed
        ├── CollectionNotFoundError (LookupError)    the collection does not exist
        └── SchemaError (ValueError)                 a field is missing or of the wrong kind/dimension

Messages say what happened and what to do about it. They never contain an API key or token.
"""

from __future__ import annotations

__all__ = [
    "CollectionNotFoundError",
    "MilvusRerankError",
    "ModelLoadError",
    "RerankConnectionError",
    "RerankError",
    "RerankHTTPError",
    "RerankResponseError",
    "RerankTimeoutError",
    "RetrievalError",
    "SchemaError",
]


class MilvusRerankError(Exception):
    """Base class of every error raised by milvus-rerank."""


class ModelLoadError(MilvusRerankError, OSError):
    """A local model could not be loaded (missing, offline without cache, or the wrong kind)."""


class RerankError(MilvusRerankError):
    """A reranker could not produce scores.

    Attributes:
        endpoint: The URL that was called, when the reranker is remote; ``None`` otherwise.
    """

    def __init__(self, message: str, *, endpoint: str | None = None) -> None:
        """Create the error with its message and, for remote rerankers, the endpoint."""
        super().__init__(message)
        self.endpoint = endpoint


class RerankHTTPError(RerankError):
    """The rerank server answered with an error status.

    Attributes:
        status_code: The HTTP status.
        server_message: The server's own error message, parsed from its body.
    """

    def __init__(self, message: str, *, endpoint: str | None, status_code: int, server_message: str) -> None:
        """Create the error; ``message`` is the full human-readable text."""
        super().__init__(message, endpoint=endpoint)
        self.status_code = status_code
        self.server_message = server_message


class RerankTimeoutError(RerankError, TimeoutError):
    """The rerank server did not answer within the timeout or the total deadline."""


class RerankConnectionError(RerankError, ConnectionError):
    """The rerank server could not be reached or dropped the connection."""


class RerankResponseError(RerankError, ValueError):
    """The rerank server's answer was malformed: bad JSON, wrong or duplicate indices, NaN scores."""


class RetrievalError(MilvusRerankError):
    """Milvus retrieval failed."""


class CollectionNotFoundError(RetrievalError, LookupError):
    """The collection does not exist."""


class SchemaError(RetrievalError, ValueError):
    """A field is missing, not returned, or of the wrong type or dimension."""
