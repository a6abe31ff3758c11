"""--long-documents and --window-overlap (issue 18): query, eval and demo pass the policy to the reranker."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import demo_parser

from milvus_rerank import CrossEncoderReranker, VLLMReranker
from milvus_rerank.cli.models import make_reranker, reranker_label
from milvus_rerank.testing.models import make_cross_encoder
from milvus_rerank.testing.server import RerankTestServer

QUERY = "dome wind closure rule"
WORDS = "the dome closes when the wind is strong and the lodge serves breakfast at seven".split()
DOCUMENTS = [" ".join(WORDS[(i * 5) % len(WORDS)] for i in range(80)), "dome wind closure"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cross_encoder(tmp_path_factory.mktemp("ce") / "model", texts=[QUERY, *WORDS], seed=4)


def test_the_local_reranker_gets_the_policy_and_the_overlap(model: Path) -> None:
    args = demo_parser().parse_args(
        ["--reranker-model", str(model), "--max-length", "24", "--long-documents", "windows", "--window-overlap", "4"]
    )
    ours = make_reranker(args)
    assert isinstance(ours, CrossEncoderReranker)
    expected = CrossEncoderReranker(model, max_length=24, long_documents="windows", window_overlap=4)
    results = ours.rerank(QUERY, DOCUMENTS)
    assert results == expected.rerank(QUERY, DOCUMENTS)
    assert any(result.span is not None for result in results)
    assert "long documents: windows (overlap 4)" in reranker_label(args)
    default = demo_parser().parse_args(["--reranker-model", str(model)])
    assert default.long_documents == "truncate"
    assert "windows" not in reranker_label(default)


def test_vllm_windows_use_the_reranker_models_tokenizer(model: Path) -> None:
    scorer = CrossEncoderReranker(model, max_length=512)
    with RerankTestServer(scorer) as server:
        argv = ["--vllm-endpoint", server.url, "--reranker-model", str(model), "--long-documents", "windows"]
        with pytest.raises(ValueError, match="--max-length"):
            make_reranker(demo_parser().parse_args(argv))
        reranker = make_reranker(demo_parser().parse_args([*argv, "--max-length", "24"]))
        assert isinstance(reranker, VLLMReranker)
        results = reranker.rerank(QUERY, DOCUMENTS)
        sent = [text for request in server.rerank_requests for text in request.body["documents"]]
        assert "truncate_prompt_tokens" not in server.rerank_requests[0].body
    local = CrossEncoderReranker(model, max_length=24, long_documents="windows")
    assert [(r.index, r.span) for r in results] == [(r.index, r.span) for r in local.rerank(QUERY, DOCUMENTS)]
    assert len(sent) > len(DOCUMENTS)


def test_a_bad_overlap_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        demo_parser().parse_args(["--window-overlap", "-1"])
    assert "--window-overlap" in capsys.readouterr().err


def test_debug_shows_how_many_windows_long_passages_became(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from milvus_rerank.cli import _debug_logs

    logger = logging.getLogger("milvus_rerank")
    handlers, level = list(logger.handlers), logger.level
    try:
        _debug_logs()  # what main() does at --debug
        CrossEncoderReranker(model, max_length=24, long_documents="windows").rerank(QUERY, DOCUMENTS)
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
    assert "1 of 2 documents were longer than 24 tokens with the query and were split into" in capsys.readouterr().err
