"""Local rerankers: Hugging Face models run in-process (``pip install 'milvus-rerank[local]'``).

- ``cross_encoder``: :class:`CrossEncoderReranker`, the reranker: argument checks, one tokenization per
  call, length-sorted batches under a token budget, the activation, the ordering.
- ``engine``: the seam between the reranker and a model family: a loaded model and its scoring engine.
- ``encoder``: the engine of sequence-classification cross-encoders.
- ``packed``: the padding-free forward pass of BERT-family encoders, which ``encoder`` uses.
- ``loading``: device and dtype, loading a model and explaining why one does not load, the per-process cache.
- ``causal``: the engine of LLM rerankers: each pair in the model's prompt (chat template or ``prompt_format``),
  scored by its answer tokens.
- ``decoder``: a decoder's head at each sequence's last token, the shared prompt prefix run once, which
  ``causal`` uses.
- ``truncation``: cutting a long text before it is tokenized, so that its cost is bounded by ``max_length``.
- ``cpu``: whether this CPU computes bfloat16 natively, and its measured cost where it is emulated.

Importing this package imports neither torch nor transformers; the first model load does.
"""

from milvus_rerank.rerankers.local.cross_encoder import CrossEncoderReranker

__all__ = ["CrossEncoderReranker"]
