"""Smoke runs of every `semsearch bench` command on tiny data: the scripts work end to end.

No figure here is a timing assertion; the tests check that each run writes its JSON, Markdown and PNG
with the figures in range, and that --check reports OK and FAIL with the right exit code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from semsearch.api.cli import main
from tests.helpers import write_beir, write_corpus

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_beir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_beir(tmp_path_factory.mktemp("beir") / "tiny-squad", records=30)


def tiny_news(folder: Path) -> Path:
    """Four short articles: enough for a server to answer and a writer to change."""
    texts = {f"a{n}.txt": f"Title {n}\n\n" + f"Paragraph {n} on energy trade in Central Asia. " * 4 for n in range(4)}
    return write_corpus(folder, texts)


def bench(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["bench", *args], catch_exceptions=False, env=env)


def outputs(out: Path, name: str) -> dict[str, Any]:
    assert (out / f"{name}.md").read_text().startswith(f"## {name}\n\n`semsearch bench {name}")
    assert (out / f"{name}.png").read_bytes().startswith(PNG_MAGIC)
    record: dict[str, Any] = json.loads((out / f"{name}.json").read_text())
    assert record["benchmark"] == name
    assert record["environment"]["hardware"]["usable_cores"] >= 1
    assert record["environment"]["threads"]["setting"] >= 1
    assert "faiss-cpu" in record["environment"]["versions"]
    machine = record["environment"]["machine"]
    assert machine["cpu"] and machine["usable_cores"] >= 1 and machine["calibration_fp32_gflops"] > 0
    return record


def test_quality_reports_every_metric_and_check_mode(tiny_beir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["quality", "--dataset", str(tiny_beir), "--queries", "25", "--latency-queries", "5", "--runs", "1"]
    args += ["--out", str(out), "--work-dir", str(tmp_path / "work")]
    result = bench(*args)
    assert result.exit_code == 0, result.output
    record = outputs(out, "quality")
    dense = record["modes"]["dense"]
    assert record["queries"] == 25 and record["index"]["articles"] == 30
    assert 0 < dense["recall@1"] <= dense["recall@5"] <= dense["recall@10"] <= dense["recall@100"] <= 100
    assert dense["recall@100"] == 100.0  # 30 records: every relevant one is within the top 100
    assert dense["mrr@10"] <= dense["recall@10"]
    assert "| dense |" in result.output

    expected = tmp_path / "expected.json"
    figures = [{"path": "modes.dense.ndcg@10", "expected": dense["ndcg@10"], "tolerance": 0.01}]
    expected.write_text(json.dumps({"figures": figures}))
    again = bench(*args, "--check", "--expected", str(expected))
    assert again.exit_code == 0 and "OK   modes.dense.ndcg@10" in again.output  # same seed, same figures

    figures[0]["expected"] = dense["ndcg@10"] + 5
    expected.write_text(json.dumps({"figures": figures}))
    failed = bench(*args, "--check", "--expected", str(expected))
    assert failed.exit_code == 1 and "FAIL modes.dense.ndcg@10" in failed.output


def test_quality_gate_compares_a_fast_backend_with_fp32(tiny_beir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = bench(
        "quality", "--dataset", str(tiny_beir), "--mode", "dense", "--latency-queries", "3", "--runs", "1",
        "--gate-against", "torch-fp32", "--out", str(out), "--work-dir", str(tmp_path / "work"),
        env={"SEMSEARCH_BACKEND": "onnx-int8", "SEMSEARCH_PLAN": "default",
             "SEMSEARCH_MODEL_CACHE": str(tmp_path / "models")},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = outputs(out, "quality")
    gate = record["gate"]
    assert record["backend"] == "onnx-int8" and gate["reference_backend"] == "torch-fp32"
    assert record["index"]["model"]["backend"] == "onnx-int8"
    assert (
        gate["passages"] == record["index"]["passages"]
        and 0.97 < gate["cosine_mean"] <= 1.0
        and gate["cosine_min"] <= gate["cosine_mean"]
    )
    dense = gate["modes"]["dense"]
    assert dense["ndcg@10"] == record["modes"]["dense"]["ndcg@10"]
    assert dense["delta_ndcg@10"] == round(dense["ndcg@10"] - dense["reference_ndcg@10"], 2)
    assert "Quality gate of the onnx-int8 backend" in result.output


def test_quality_refuses_an_unknown_mode_and_a_non_beir_folder(tmp_path: Path) -> None:
    unknown = bench("quality", "--mode", "telepathy", "--out", str(tmp_path))
    assert unknown.exit_code == 2 and "telepathy" in unknown.output
    missing = CliRunner().invoke(main, ["bench", "quality", "--dataset", str(tmp_path), "--out", str(tmp_path)])
    assert missing.exit_code == 1 and "not a BEIR data set" in missing.output


def test_latency_measures_stages_and_http_levels(tiny_beir: Path, tmp_path: Path) -> None:
    corpus = tiny_news(tmp_path / "news")
    out = tmp_path / "out"
    result = bench(
        "latency", "--corpus", str(corpus), "--dataset", str(tiny_beir), "--queries", "6", "--runs", "2",
        "--concurrency", "1,3", "--requests", "9", "--seconds", "600", "--out", str(out), "--work-dir", str(tmp_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = outputs(out, "latency")
    assert set(record["in_process"]) == {"encode", "retrieve", "search"}
    for stage in record["in_process"].values():
        assert 0 < stage["p50_ms"] <= stage["p99_ms"] and stage["runs"] == 2
    assert set(record["http"]) == {"c1", "c3"}
    for level in record["http"].values():
        assert level["requests"] == 9 and level["errors_total"] == 0 and level["qps"] > 0


def test_latency_names_a_python_without_txtai(tiny_beir: Path, tmp_path: Path) -> None:
    """The txtai baseline runs in another Python; one without txtai is one clear error, not a traceback."""
    corpus = tiny_news(tmp_path / "news")
    result = CliRunner().invoke(
        main,
        ["bench", "latency", "--corpus", str(corpus), "--dataset", str(tiny_beir), "--queries", "3", "--runs", "1",
         "--txtai-python", sys.executable, "--out", str(tmp_path / "out"), "--work-dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 1 and "The txtai baseline failed" in result.output and "txtai" in result.output
    assert not (tmp_path / "out" / "latency.json").exists()


def test_load_run_stops_by_itself_with_writes_and_no_errors(tiny_beir: Path, tmp_path: Path) -> None:
    corpus = tiny_news(tmp_path / "news")
    out = tmp_path / "out"
    # The behaviour the shipped figures demand on any machine, and a throughput no machine reaches: bound to a
    # machine the file does not name, it is not compared, so the check passes on a machine of any speed.
    expected = tmp_path / "expected.json"
    figures = [{"path": f"load.{name}", "expected": 0, "tolerance": 0} for name in ("errors", "write_errors")]
    figures += [{"path": f"load.{name}", "expected": 1, "tolerance": 0} for name in ("generation_changed",)]
    figures += [{"path": "load.qps", "expected": 10**6, "tolerance_pct": 50, "better": "higher", "scope": "machine"}]
    expected.write_text(json.dumps({"figures": figures}))
    result = bench(
        "load", "--corpus", str(corpus), "--dataset", str(tiny_beir), "--queries", "6", "--concurrency", "4",
        "--seconds", "8", "--write-every", "2", "--out", str(out), "--work-dir", str(tmp_path),
        "--check", "--expected", str(expected),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3 OK, 0 FAIL, 1 SKIP" in result.output and "SKIP load.qps" in result.output
    load = outputs(out, "load")["load"]
    assert load["requests"] > 0 and load["errors"] == 0 and 0 < load["p50_ms"] <= load["p99_ms"]
    assert load["writes"] >= 2 and load["write_errors"] == 0 and load["generation_changed"] == 1
    assert 7 <= load["seconds"] <= 8 + 60  # stops at 8 s, plus at most one query in flight (60 s client timeout)
    assert not (tmp_path / "load-index").exists()  # the served copy is gone; the cached index is untouched


def test_latency_rejects_a_bad_concurrency_list(tmp_path: Path) -> None:
    result = bench("latency", "--concurrency", "1,x", "--out", str(tmp_path))
    assert result.exit_code == 2 and "--concurrency" in result.output


def test_indexing_compares_the_build_with_plain_encode(tiny_beir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = bench(
        "indexing", "--dataset", str(tiny_beir), "--records", "12", "--runs", "1", "--plan-rounds", "1",
        "--probe", "4", "--out", str(out), "--work-dir", str(tmp_path / "work"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = outputs(out, "indexing")
    assert record["articles"] == 12 and record["passages"] >= 12
    assert record["build"]["embed_passages_per_second"] > 0 and record["baseline"]["passages_per_second"] > 0
    assert record["ratio_embed_vs_baseline"] > 0
    assert record["build"]["peak_rss_bytes"] > 50 * 2**20  # a process that loaded torch and the model
    assert record["disk_bytes_per_passage"] > 384 * 4 and record["memory_bytes_per_passage"] > 0
    assert len(record["ratio_embed_rounds"]) == 1
    products = record["products"]
    assert (
        products["threads"] == record["settings"]["threads"]
        and products["int8_gmacs"] > 0
        and products["fp32_gmacs"] > 0
    )
    phases = record["phases"]
    assert phases["plan"] == record["build"]["plan"] and phases["ms_per_passage"]["transformer"] > 0
    assert abs(sum(o["share"] for o in phases["operators"]) - 1) < 0.01
    plans = record["plans"]
    assert plans["probe"]["passages"] == 4 and len(plans["plans"]) >= 2 * 5  # two backends, five batchings each
    assert set(plans["chosen"]) == {"fresh", "cached"}  # the build ran the cached plan's batches
    assert record["build"]["plan"].startswith(plans["chosen"]["cached"]["plan"].split(",query=")[0])
    assert all(c["ratio_vs_fastest"] > 0 for c in plans["chosen"].values()) and plans["first_use_seconds"] > 0
    markdown = (out / "indexing.md").read_text()
    assert "(rounds: " in markdown and "Matrix products alone" in markdown
    assert "Where embedding time goes" in markdown and "Plans on the planner's probe" in markdown
    assert not (tmp_path / "work" / "indexing-run").exists()


def test_ann_sweeps_index_settings_against_exact_search(tiny_beir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = bench(
        "ann", "--dataset", str(tiny_beir), "--sizes", "corpus,3000", "--hnsw-max", "3000", "--runs", "1",
        "--out", str(out), "--work-dir", str(tmp_path / "work"), env={"SEMSEARCH_ANN_THRESHOLD": "1000"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = outputs(out, "ann")
    corpus, synthetic = record["sizes"]
    assert corpus["vectors"] >= 30 and synthetic["vectors"] == 3000
    flat = [r for r in synthetic["rows"] if r["index"] == "Flat"]
    assert flat[0]["recall@10"] == 1.0 and not flat[0]["engine_choice"]
    # The engine's own index: exact below the threshold, HNSW tuned to the recall target above it.
    assert [r["index"] for r in corpus["rows"] if r["engine_choice"]] == ["engine: Flat"]
    (engine,) = [r for r in synthetic["rows"] if r["engine_choice"]]
    assert engine["index"] == "engine: HNSW32" and engine["build_recall@10"] >= 0.98 and "efSearch=" in engine["param"]
    ivf = [r for r in synthetic["rows"] if r["index"].startswith("IVF")]
    assert len(ivf) >= 3 and ivf[0]["recall@10"] <= ivf[-1]["recall@10"]  # more lists probed, more recall
    assert {r["index"] for r in synthetic["rows"]} >= {"Flat", "HNSW32,Flat"}


def test_ann_rejects_a_bad_size(tmp_path: Path) -> None:
    result = bench("ann", "--sizes", "corpus,ten", "--out", str(tmp_path))
    assert result.exit_code == 2 and "--sizes" in result.output


def test_results_assembles_the_markdown_of_each_run(tmp_path: Path) -> None:
    source = tmp_path / "results"
    source.mkdir()
    (source / "quality.md").write_text("## quality\n\n`semsearch bench quality`\n\n| a |\n")
    (source / "quality.png").write_bytes(PNG_MAGIC)
    target = tmp_path / "RESULTS.md"
    result = bench("results", "--from", str(source), "--to", str(target))
    assert result.exit_code == 0, result.output
    text = target.read_text()
    assert "## quality" in text and "![quality](results/quality.png)" in text
    empty = bench("results", "--from", str(tmp_path / "none"), "--to", str(target))
    assert empty.exit_code != 0 and "No benchmark results" in empty.output


def test_writes_measures_segments_against_their_baselines(tiny_beir: Path, tmp_path: Path) -> None:
    corpus = tiny_news(tmp_path / "news")
    out = tmp_path / "out"
    result = bench(
        "writes", "--sizes", "1200", "--corpus", str(corpus), "--dataset", str(tiny_beir), "--writes", "2",
        "--rebuild-writes", "1", "--load-seconds", "3", "--load-max", "2000", "--disk-writes", "3",
        "--disk-max", "2000", "--quality-writes", "3", "--queries", "6", "--runs", "1", "--out", str(out),
        "--work-dir", str(tmp_path / "work"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = outputs(out, "writes")
    (size,) = record["sizes"]
    assert size["passages"] == 1200 and sum(size["layout"]) == 1200 and len(size["layout"]) > 1
    # Segments hold whole articles (nine passages each), so the policy's smallest sizes round up and may fold.
    assert 1 < size["search"]["tiered"]["segments"] <= len(size["layout"]) and size["search"]["single"]["segments"] == 1
    assert size["write"]["count"] == 2 and size["write"]["p50_ms"] > 0 and size["rebuild"]["count"] == 1
    assert size["load"]["errors"] == 0 and size["load"]["write_errors"] == 0 and size["load"]["writes"] >= 1
    assert size["disk"]["writes"] == 3 and size["disk"]["ratio"] > 0
    assert size["memory"]["rss_bytes"] > 0 and size["memory"]["parts"]["vectors"] > 0
    quality = record["quality"]
    assert quality["write_count"] == 3 and quality["abs_difference"] <= 0.1  # the same hits, written in 3 writes
    assert not (tmp_path / "work" / "writes-live-1200").exists()  # the served copy is gone
