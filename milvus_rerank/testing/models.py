"""Tiny cross-encoders made on the spot, for tests and benchmarks without a model hub.

The models have random weights drawn with a fixed seed, so their scores are meaningless but
reproducible, and they load through exactly the code path of a real Hugging Face checkpoint.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

__all__ = ["MINILM_L6_H384", "TINY_BERT", "make_cross_encoder", "write_wordpiece_vocab"]

_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_BASE_WORDS = """
the of and to in a is that for it as was with be by on not he this are or his from at which but
have an they you were her she there been one all we their has would when if so no what up out
can more who about into some than them only other could time these two may then do first any my
now such like our over man me even most made after also did many before must through back years
where much your way well down should because each just those people how too little state good
very make world still own see men work long get here between both life being under never day
same another know while last might us great old year off come since against go came right used
take three cancer cell cells protein gene genes disease patients study risk treatment effect
effects increased reduced expression levels clinical human mice role blood brain health data
model models rerank reranker search vector milvus query document documents text retrieval
""".split()


def write_wordpiece_vocab(path: str | Path, texts: Iterable[str] = ()) -> Path:
    """Write a WordPiece ``vocab.txt``: specials, characters, ``##`` pieces and words.

    Every lowercase ASCII word can be tokenized with it (at worst letter by letter), and words
    from ``texts`` become single tokens, so token counts look like a real vocabulary's.
    """
    chars = [chr(c) for c in range(33, 127) if not chr(c).isupper()]
    pieces = [f"##{c}" for c in chars if c.isalnum()]
    words = list(dict.fromkeys(_BASE_WORDS + [w for t in texts for w in re.findall(r"[a-z]+", t.lower())]))
    vocab = list(dict.fromkeys(_SPECIAL_TOKENS + chars + pieces + words))
    path = Path(path)
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return path


TINY_BERT: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    # Wide initial weights, so that scores depend visibly on the input text.
    "initializer_range": 0.5,
}
"""A BERT small enough to load and run in milliseconds."""

MINILM_L6_H384: dict[str, Any] = {
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "initializer_range": 0.05,
}
"""The shape of ``cross-encoder/ms-marco-MiniLM-L-6-v2``: the same speed, random weights."""


def make_cross_encoder(
    path: str | Path,
    *,
    num_labels: int = 1,
    activation: Literal["default", "sigmoid", "identity"] = "default",
    architecture: dict[str, Any] | None = None,
    max_position_embeddings: int = 512,
    texts: Iterable[str] = (),
    seed: int = 0,
) -> Path:
    """Save a randomly initialised BERT cross-encoder (model + fast WordPiece tokenizer) to ``path``.

    Args:
        path: Directory to create.
        num_labels: 1 for a relevance score, 2 for a classifier scored by its positive label.
        activation: ``"default"`` declares nothing; ``"sigmoid"`` or ``"identity"`` is written into
            the config the way sentence-transformers records a cross-encoder's activation.
        architecture: Sizes as in :data:`TINY_BERT` (default) or :data:`MINILM_L6_H384`.
        max_position_embeddings: The model's token limit.
        texts: Extra texts whose words join the vocabulary.
        seed: Seed of the random weights.

    Returns:
        The directory, ready for ``CrossEncoderReranker(path)`` or ``from_pretrained(path)``.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab_file = write_wordpiece_vocab(path / "vocab.txt", texts)
    # transformers 5 takes the vocabulary as `vocab` and silently ignores `vocab_file` (every word would be [UNK]).
    vocab_arg = "vocab" if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters else "vocab_file"
    tokenizer = BertTokenizerFast(**{vocab_arg: str(vocab_file)}, do_lower_case=True)
    vocab_size = len(vocab_file.read_text(encoding="utf-8").splitlines())
    if len(tokenizer) != vocab_size:
        raise RuntimeError(f"tokenizer has {len(tokenizer)} tokens, expected the {vocab_size} of {vocab_file}")
    tokenizer.model_max_length = max_position_embeddings
    tokenizer.save_pretrained(path)

    config = BertConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=max_position_embeddings,
        num_labels=num_labels,
        **(architecture or TINY_BERT),
    )
    if activation != "default":
        fn = "torch.nn.modules.activation.Sigmoid" if activation == "sigmoid" else "torch.nn.modules.linear.Identity"
        config.sentence_transformers = {"activation_fn": fn}
        config.sbert_ce_default_activation_function = fn
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(path)
    return path
