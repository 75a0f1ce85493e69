"""bench/serve.py works end to end on the tiny trained model (a functional check, never a
timing): every row is there, serve answered, and its labels match the pipeline's."""

import json

import pytest

pytest.importorskip("uvicorn")


def test_bench_serve_tiny(trained_run, tmp_path):
    from bench import serve

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(["the movie was great", "an awful plot", "nice film", "bad scene"]) + "\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "RESULTS.md").write_text("# Benchmark results\n\nkept\n")
    serve.main(["--run-dir", trained_run, "--texts", str(texts), "--clients", "1,4", "--seconds", "0.3", "--max-batches", "2",
                "--threads", "1", "--idle-timeout", "0", "--out", str(tmp_path / "out")])
    res = json.loads((tmp_path / "out" / "serve_results.json").read_text())
    names = [(r["name"], r["clients"]) for r in res["rows"]]
    # one serve configuration (each costs a server start): the bench's default is 32,1
    assert names == [("transformers pipeline, plain loop", 1),
                     ("taskbert serve --max-batch 2", 1), ("taskbert serve --max-batch 2", 4)]
    for row in res["rows"]:
        assert row["answered"] > 0 and row["same_labels"] == 1.0 and row["p50_ms"] <= row["p99_ms"], row
    one_client, four = res["rows"][1:]
    assert one_client["mean_batch"] == 1.0 and 1.0 <= four["mean_batch"] <= 2.0
    md = (tmp_path / "out" / "RESULTS.md").read_text()
    assert md.startswith("# Benchmark results\n\nkept\n") and md.count("## Serve") == 1
    serve.write_section(str(tmp_path / "out" / "RESULTS.md"), serve.markdown(res))   # replaced, not added
    assert (tmp_path / "out" / "RESULTS.md").read_text().count("## Serve") == 1
