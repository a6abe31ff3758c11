"""``python -m milvus_rerank.cli``: the ``milvus-rerank`` command without its console script."""

from milvus_rerank.cli import main

raise SystemExit(main())
