"""Server-side rerank: the Milvus model-ranker Functions, and Milvus Lite calling the test server."""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pymilvus import AnnSearchRequest, DataType, FunctionType, MilvusClient
from pymilvus.exceptions import MilvusException

from milvus_rerank import CohereReranker, JinaReranker, TEIReranker, VLLMReranker, VoyageReranker, model_ranker
from milvus_rerank.milvus.functions import cohere_ranker, milvus_endpoint, tei_ranker, vllm_ranker, voyage_ranker
from milvus_rerank.testing.providers import JinaTestServer, VoyageTestServer
from milvus_rerank.testing.server import Fault, RerankTestServer, WordOverlapReranker

TEXTS = [
    "milvus vector search engine",
    "birds fly south in winter",
    "milvus",
    "cats sleep a lot",
    "a vector database for search with milvus",
    "search engines rank pages",
]
QUERY = "milvus vector search"


# -- vLLM and TEI Functions (for a Milvus 2.6 server) ---------------------------------------------


def test_vllm_function_params() -> None:
    reranker = VLLMReranker("http://vllm.internal:8000/v1/rerank", truncate_prompt_tokens=-1, max_batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a standard route is no loss: no warning
        fn = model_ranker(reranker, ["q1", "q2"], input_field="document")
    assert fn.name == "vllm_semantic_ranker"
    assert fn.type == FunctionType.RERANK
    assert fn.input_field_names == ["document"]
    assert fn.params == {
        "reranker": "model",
        "provider": "vllm",
        "queries": ["q1", "q2"],
        "endpoint": "http://vllm.internal:8000",
        "max_client_batch_size": 16,
        "truncate_prompt_tokens": -1,
    }


def test_tei_function_params() -> None:
    reranker = TEIReranker("https://tei.internal/rerank", truncate=True, truncation_direction="Left")
    fn = model_ranker(reranker, "one query", name="tei_ranker", credential="tei_key")
    assert fn.name == "tei_ranker"
    assert fn.input_field_names == ["text"]
    assert fn.params == {
        "reranker": "model",
        "provider": "tei",
        "queries": ["one query"],
        "endpoint": "https://tei.internal:443",
        "max_client_batch_size": 32,
        "truncate": True,
        "truncation_direction": "Left",
        "credential": "tei_key",
    }


def test_milvus_endpoint_is_the_origin_with_an_explicit_port() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no path prefix: nothing is lost
        assert milvus_endpoint("https://gw.example") == "https://gw.example:443"
        assert milvus_endpoint("http://h:8000") == "http://h:8000"
        assert milvus_endpoint("http://[::1]:9") == "http://[::1]:9"
        assert milvus_endpoint("http://user:pw@h") == "http://h:80"  # never the credentials


def test_a_dropped_path_prefix_warns() -> None:
    reranker = VLLMReranker("http://gateway:8080/models/reranker/v1")
    with pytest.warns(UserWarning, match="prefix '/models/reranker' of the endpoint is dropped") as caught:
        fn = model_ranker(reranker, ["q"])
    assert fn.params["endpoint"] == "http://gateway:8080"
    assert caught[0].filename == __file__


def test_the_builders_take_plain_values() -> None:
    fn = vllm_ranker("q", base_url="http://h:8000", input_field="body", name="n", max_client_batch_size=8)
    assert (fn.name, fn.input_field_names) == ("n", ["body"])
    assert fn.params == {
        "reranker": "model",
        "provider": "vllm",
        "queries": ["q"],
        "endpoint": "http://h:8000",
        "max_client_batch_size": 8,
    }
    fn = tei_ranker(["q"], base_url="https://t", input_field="text", name="t", max_client_batch_size=4, truncate=True)
    assert fn.params["endpoint"] == "https://t:443"
    assert fn.params["truncate"] is True
    cohere = {"input_field": "text", "name": "c", "max_client_batch_size": 1, "model": "m"}
    fn = cohere_ranker(["q"], rerank_url="http://c:1/v2/rerank", **cohere)
    assert (fn.params["base_url"], fn.params["model_name"]) == ("http://c:1/v2", "m")
    with pytest.raises(ValueError, match="'/v1/score'"):
        cohere_ranker(["q"], rerank_url="http://c:1/v1/score", **cohere)


@pytest.mark.parametrize(
    ("export", "match"),
    [
        (lambda: model_ranker(VLLMReranker("http://h:1/prefix"), ["q"]), "prefix"),
        (lambda: model_ranker(TEIReranker("http://h:1", api_key="k"), ["q"]), "credential"),
        (lambda: model_ranker(CohereReranker("http://h:1", model="m"), ["q"], target="server"), "milvus.yaml"),
        (
            lambda: vllm_ranker(["q"], base_url="http://h:1/p", input_field="t", name="n", max_client_batch_size=1),
            "prefix",
        ),
    ],
    ids=["prefix", "api-key", "cohere-server", "builder"],
)
def test_every_export_warning_points_at_the_callers_line(export: Callable[[], object], match: str) -> None:
    with pytest.warns(UserWarning, match=match) as caught:
        export()
    assert [warning.filename for warning in caught] == [__file__] * len(caught)


def test_the_function_export_imports_no_reranker() -> None:
    code = (
        "import sys, milvus_rerank.milvus.functions, milvus_rerank.milvus.export; "
        "sys.exit(any(m.startswith(('milvus_rerank.rerankers', 'pymilvus')) for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_an_api_key_without_credential_warns_and_never_enters_the_function() -> None:
    reranker = VLLMReranker("http://vllm:8000", api_key="sk-secret-1")
    with pytest.warns(UserWarning, match="credential"):
        fn = model_ranker(reranker, ["q"])
    assert "sk-secret-1" not in str(fn.params)


@pytest.mark.parametrize("reranker_type", [VLLMReranker, TEIReranker])
def test_raw_scores_are_not_carried_over_and_say_so(reranker_type: type[VLLMReranker | TEIReranker]) -> None:
    with pytest.warns(UserWarning, match="raw_scores=True is not carried over") as caught:
        model_ranker(reranker_type("http://server:8000", raw_scores=True), ["q"])
    assert caught[0].filename == __file__  # the warning points at the caller's line


@pytest.mark.parametrize(
    ("queries", "field", "error", "match"),
    [
        ([], "text", ValueError, "one query string per search query"),
        (["ok", ""], "text", ValueError, r"queries\[1\] is empty"),
        (["ok", 3], "text", TypeError, r"queries\[1\]"),
        (["q"], ["a", "b"], ValueError, "exactly one VARCHAR field"),
        (["q"], "", ValueError, "input_field"),
    ],
)
def test_function_arguments_are_validated(queries: object, field: object, error: type, match: str) -> None:
    for reranker in (VLLMReranker("http://h:1"), TEIReranker("http://h:1"), CohereReranker("http://h:1", model="m")):
        with pytest.raises(error, match=match):
            model_ranker(reranker, queries, input_field=field)  # type: ignore[arg-type]


def test_cohere_function_for_a_milvus_server() -> None:
    reranker = CohereReranker(model="rerank-v3.5", max_tokens_per_doc=512, max_batch_size=50)
    with pytest.warns(UserWarning, match=r"milvus\.yaml"):
        fn = model_ranker(reranker, ["q"], target="server", credential="cohere_key")
    assert fn.params == {
        "reranker": "model",
        "provider": "cohere",
        "queries": ["q"],
        "model_name": "rerank-v3.5",
        "max_client_batch_size": 50,
        "max_tokens_per_doc": 512,
        "credential": "cohere_key",
    }
    with pytest.raises(ValueError, match="model"):
        model_ranker(CohereReranker(), ["q"], target="server")
    with pytest.raises(ValueError, match="raw key"):
        model_ranker(reranker, ["q"], target="server", include_api_key=True)
    with pytest.raises(ValueError, match="target"):
        model_ranker(reranker, ["q"], target="cloud")  # type: ignore[arg-type]


@pytest.mark.parametrize("target", ["lite", "server"])
def test_a_cohere_function_needs_the_model_instead_of_failing_inside_every_search(target: str) -> None:
    # Milvus Lite would name "rerank-v3.5", which a vLLM server refuses with a 404 inside each search,
    # while the reranker itself works there without a model: the export asks for it instead.
    with RerankTestServer() as server:
        reranker = CohereReranker(server.url)
        assert [r.index for r in reranker.rerank(QUERY, TEXTS[:3])] == [0, 2, 1]
        with pytest.raises(ValueError, match=r"model='<served name>'.*/v1/models"):
            model_ranker(reranker, [QUERY], target=target)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model"):
        cohere_ranker(
            [QUERY],
            rerank_url="http://c:1/v2/rerank",
            input_field="text",
            name="c",
            model=None,
            max_client_batch_size=1,
            target=target,
        )  # type: ignore[arg-type]


# -- Milvus Lite calls the test server through the cohere provider ---------------------------------


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[MilvusClient]:
    client = MilvusClient(str(tmp_path / "lite.db"))
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=256)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    index = client.prepare_index_params()
    index.add_index("v", metric_type="IP", index_type="AUTOINDEX")
    client.create_collection("docs", schema=schema, index_params=index)
    client.insert("docs", [{"id": i, "text": t, "v": [1.0, 0.2 * i]} for i, t in enumerate(TEXTS)])
    client.flush("docs")
    yield client
    client.close()


def ranked_ids(hits: list[dict]) -> list[int]:
    return [hit["id"] for hit in hits]


def test_lite_search_with_the_cohere_function_calls_the_server(lite: MilvusClient) -> None:
    with RerankTestServer() as server:
        reranker = CohereReranker(server.url, model=server.model_name)
        fn = model_ranker(reranker, [QUERY], input_field="text")
        assert fn.params["base_url"] == server.url + "/v2"
        (hits,) = lite.search("docs", data=[[1.0, 0.0]], anns_field="v", limit=3, output_fields=["text"], ranker=fn)
        (record,) = server.rerank_requests
    assert record.path == "/v2/rerank"
    assert record.body["model"] == server.model_name
    assert record.body["query"] == QUERY
    sent = record.body["documents"]
    scores = {r.index: r.score for r in WordOverlapReranker().rerank(QUERY, sent)}
    want = sorted(range(len(sent)), key=lambda i: (-scores[i], i))[:3]
    assert [hit["entity"]["text"] for hit in hits] == [sent[i] for i in want]
    assert [hit["distance"] for hit in hits] == pytest.approx([scores[i] for i in want], rel=1e-6)
    assert ranked_ids(hits)[0] in (0, 4)


def test_lite_hybrid_search_with_the_cohere_function(lite: MilvusClient) -> None:
    requests = [
        AnnSearchRequest([[1.0, 0.0]], "v", {}, limit=4),
        AnnSearchRequest([[0.0, 1.0]], "v", {}, limit=4),
    ]
    with RerankTestServer(api_key="sk-lite-1") as server:
        reranker = CohereReranker(server.url + "/v2", model=server.model_name, api_key="sk-lite-1")
        fn = model_ranker(reranker, [QUERY], include_api_key=True)
        (hits,) = lite.hybrid_search("docs", requests, ranker=fn, limit=3, output_fields=["text"])
        (record,) = server.rerank_requests
    assert record.headers["authorization"] == "Bearer sk-lite-1"
    assert record.status == 200
    sent = record.body["documents"]
    best = WordOverlapReranker().rerank(QUERY, sent, top_n=3)
    assert [hit["entity"]["text"] for hit in hits] == [sent[r.index] for r in best]


def test_lite_reads_the_key_from_the_environment(lite: MilvusClient, monkeypatch: pytest.MonkeyPatch) -> None:
    with RerankTestServer(api_key="sk-env-2") as server:
        reranker = CohereReranker(server.url, model=server.model_name, api_key="sk-env-2")
        with pytest.raises(ValueError, match="include_api_key=True"):
            model_ranker(reranker, [QUERY])
        monkeypatch.setenv("COHERE_API_KEY", "sk-env-2")
        fn = model_ranker(reranker, [QUERY])
        assert "api_key" not in fn.params
        lite.search("docs", data=[[1.0, 0.0]], anns_field="v", limit=2, ranker=fn)
        assert [record.status for record in server.rerank_requests] == [200]


def test_lite_surfaces_a_failing_rerank_service(lite: MilvusClient) -> None:
    with RerankTestServer() as server:
        server.inject(Fault.server_error(503))
        fn = model_ranker(CohereReranker(server.url, model=server.model_name), [QUERY])
        with pytest.raises(MilvusException, match="503"):
            lite.search("docs", data=[[1.0, 0.0]], anns_field="v", limit=2, ranker=fn)


# -- the rerankers describe themselves; model_ranker builds the Function ---------------------------


def test_rerankers_do_not_import_milvus() -> None:
    root = Path(__file__).resolve().parents[2] / "milvus_rerank" / "rerankers"
    importers = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if any(name == "milvus_rerank.milvus" or name.startswith("milvus_rerank.milvus.") for name in names):
                importers.append(path.name)
    assert importers == []
    code = (
        "import sys, milvus_rerank.rerankers.http as h; "
        "[h.VoyageReranker('http://h:1').describe(), h.CohereReranker('http://h:1').describe()]; "
        "sys.exit(any(m.startswith(('milvus_rerank.milvus', 'pymilvus')) for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_describe_is_plain_data_with_a_hidden_key() -> None:
    reranker = VLLMReranker("http://vllm:8000/v1", model="m", api_key="sk-described-1", truncate_prompt_tokens=-1)
    service = reranker.describe()
    assert (service.protocol, service.base_url, service.rerank_url, service.model, service.batch_size) == (
        "vllm",
        "http://vllm:8000",
        "http://vllm:8000/v1/rerank",
        "m",
        64,
    )
    assert {"truncate_prompt_tokens": -1, "raw_scores": False, "prompt_format": None, "instruction": None}.items() <= (
        service.options.items()
    )
    assert service.api_key is not None
    assert service.api_key.reveal() == "sk-described-1"
    assert "sk-described-1" not in repr(service) + str(service.api_key)
    with pytest.raises(TypeError):
        service.options["raw_scores"] = True  # type: ignore[index]
    with pytest.warns(UserWarning, match="credential"):  # the description carries the key: the export sees it
        from_description = model_ranker(service, ["q"]).params
    assert from_description == model_ranker(VLLMReranker("http://vllm:8000", truncate_prompt_tokens=-1), ["q"]).params
    with pytest.raises(TypeError, match="needs an HTTP reranker of milvus_rerank"):
        model_ranker(WordOverlapReranker(), ["q"])  # type: ignore[arg-type]


def test_voyage_function_params() -> None:
    reranker = VoyageReranker(model="rerank-2.5-lite", truncation=False, max_batch_size=200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Voyage's own URL and no key: nothing is lost
        fn = model_ranker(reranker, ["q1", "q2"], input_field="document", credential="voyage_key")
    assert fn.name == "voyage_semantic_ranker"
    assert fn.input_field_names == ["document"]
    assert fn.params == {
        "reranker": "model",
        "provider": "voyageai",
        "queries": ["q1", "q2"],
        "max_client_batch_size": 200,
        "model_name": "rerank-2.5-lite",
        "truncation": False,
        "credential": "voyage_key",
    }
    assert "truncation" not in model_ranker(VoyageReranker(), ["q"]).params
    assert voyage_ranker(["q"], input_field="t", name="v", model="rerank-2", max_client_batch_size=128).params == {
        "reranker": "model",
        "provider": "voyageai",
        "queries": ["q"],
        "max_client_batch_size": 128,
        "model_name": "rerank-2",
    }


def test_voyage_function_warnings_and_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOYAGE_API_KEY", "pa-env-9")
    with pytest.warns(UserWarning, match="or set VOYAGE_API_KEY where the Milvus server runs") as caught:
        fn = model_ranker(VoyageReranker(), ["q"])
    assert caught[0].filename == __file__
    assert "pa-env-9" not in str(fn.params)
    with pytest.warns(UserWarning, match=r"voyageai URL set in milvus\.yaml"):
        model_ranker(VoyageReranker("http://127.0.0.1:9"), ["q"])
    with pytest.raises(ValueError, match="Milvus Lite has the cohere provider only, not 'voyageai'"):
        model_ranker(VoyageReranker(), ["q"], target="lite")
    with pytest.raises(ValueError, match="never takes a raw key"):
        model_ranker(VoyageReranker(), ["q"], include_api_key=True)
    with pytest.raises(ValueError, match="Milvus Lite has the cohere provider only, not 'vllm'"):
        model_ranker(VLLMReranker("http://h:1"), ["q"], target="lite")


def test_lite_refuses_the_voyage_function(lite: MilvusClient) -> None:
    # Milvus Lite 3.x has no voyageai provider; a Milvus 2.6 server calls the voyageai URL of its milvus.yaml.
    with VoyageTestServer() as server:
        with pytest.warns(UserWarning, match=r"milvus\.yaml"):
            fn = model_ranker(VoyageReranker(server.url), [QUERY])
        with pytest.raises(MilvusException, match=r"Unknown rerank provider: 'voyageai'\. Supported: 'cohere'"):
            lite.search("docs", data=[[1.0, 0.0]], anns_field="v", limit=3, ranker=fn)
        assert server.rerank_requests == []


def test_lite_reaches_jina_through_the_cohere_provider(lite: MilvusClient) -> None:
    with JinaTestServer(api_key="jina-lite-1") as server:
        reranker = JinaReranker(server.url, api_key="jina-lite-1")
        fn = model_ranker(reranker, [QUERY], include_api_key=True)
        assert (fn.name, fn.params["provider"], fn.params["base_url"]) == (
            "jina_semantic_ranker",
            "cohere",
            server.url + "/v1",
        )
        (hits,) = lite.search("docs", data=[[1.0, 0.0]], anns_field="v", limit=3, output_fields=["text"], ranker=fn)
        (record,) = server.rerank_requests
    assert record.headers["authorization"] == "Bearer jina-lite-1"
    assert record.body["model"] == "jina-reranker-v2-base-multilingual"
    sent = record.body["documents"]
    best = WordOverlapReranker().rerank(QUERY, sent, top_n=3)
    assert [hit["entity"]["text"] for hit in hits] == [sent[r.index] for r in best]


def test_cohere_keys_from_the_environment_agree_with_milvus_lite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CO_API_KEY", raising=False)
    monkeypatch.setenv("COHERE_API_KEY", "co-env-1")
    fn = model_ranker(CohereReranker(model="rerank-v3.5"), ["q"])  # the key is COHERE_API_KEY's: Lite reads it there
    assert "api_key" not in fn.params
    assert fn.params["base_url"] == "https://api.cohere.com/v2"
    monkeypatch.delenv("COHERE_API_KEY")
    monkeypatch.setenv("CO_API_KEY", "co-env-2")
    reranker = CohereReranker(model="rerank-v3.5")
    assert reranker.describe().api_key is not None
    with pytest.raises(ValueError, match="Milvus Lite reads from COHERE_API_KEY"):
        model_ranker(reranker, ["q"])  # Lite does not read CO_API_KEY
    assert model_ranker(reranker, ["q"], include_api_key=True).params["api_key"] == "co-env-2"
