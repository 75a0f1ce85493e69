"""The benchmark's pieces work end to end on a tiny encoder (a functional check, never a timing).

``bench.run`` trains the HF ``Trainer`` and taskbert side by side in subprocesses, then times
``taskbert predict`` against ``transformers.pipeline`` on the same weights. Here it runs a few
steps of two configurations per task on the tiny random encoder, and the test checks the
report's structure and the one thing that must hold whatever the speed: both inference paths
give the same labels for the same weights.
"""

import json

import pytest

pytest.importorskip("transformers")


def test_bench_run_tiny(tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    from bench import run
    from taskbert.testing import make_tiny_encoder

    # The benchmark reads the real review texts, which a tiny character-level vocabulary turns
    # into long inputs: give the tokenizer a limit so the pipeline truncates as taskbert does.
    encoder = make_tiny_encoder(str(tmp_path / "encoder"), "good bad the movie".split())
    tok = AutoTokenizer.from_pretrained(encoder)
    tok.model_max_length = 32
    tok.save_pretrained(encoder)

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # subprocesses: stay on one core like the suite
    run.main(["--model", encoder, "--steps", "4", "--warmup-steps", "1", "--n-train", "64",
              "--n-eval", "24", "--n-predict", "24", "--max-length", "32", "--modes",
              "dynamic,taskbert", "--tasks", "sentiment", "--idle-timeout", "0", "--peak-seconds", "0.5", "--repeats", "2",
              "--out", str(tmp_path / "out")])
    out = tmp_path / "out"
    res = json.loads((out / "results.json").read_text())
    assert res["peak_gflops"] > 0
    assert res["device"] == "cpu" and res["peak_dtype"] == "fp32"
    for name, task_res in res["train"].items():
        assert set(task_res) == {"dynamic", "taskbert"}, name
        for mode, r in task_res.items():
            assert r["steps"] == 4 and r["timed_steps"] == 3, (name, mode)
            assert r["samples_per_s"] > 0 and 0 < r["padding_efficiency"] <= 1
            assert 0 <= r["accuracy"] <= 1 and r["peak_rss_mb"] > 0
            assert r["peak_gpu_mb"] is None   # --device cpu: the workers see no GPU
            assert len(r["runs"]) == 2 and r["samples_per_s"] in r["runs"]   # the median run's
        # the ratio is paired within each round: two rounds, two ratios, their median reported
        ratio = task_res["dynamic"]["ratio"]
        assert len(ratio["rounds"]) == 2 and ratio["median"] == min(ratio["rounds"])
    # taskbert buckets by length: it pads no more than the Trainer's random batches
    for name, task_res in res["train"].items():
        assert task_res["taskbert"]["padding_efficiency"] >= task_res["dynamic"]["padding_efficiency"] - 1e-9, name
    pred = res["predict"]
    assert pred["pipeline"]["n"] == pred["taskbert"]["n"] == 24
    assert pred["taskbert"]["same_labels_as_pipeline"] == 1.0
    assert len(pred["taskbert"]["runs"]) == 2 and pred["pipeline"]["ratio"]["median"] == 1.0
    text = (out / "RESULTS.md").read_text()
    assert "(d) taskbert" in text and "predict ≥ 2× pipeline" in text


def test_taskbert_side_token_classification_in_process(tiny_encoder, tmp_path, monkeypatch):
    """The NER path of the taskbert side: the step meter sees every step and tags are scored."""
    from bench import common
    from bench.run import load_wnut

    # hermetic: a small CoNLL set written here instead of the prepared WNUT-16 files
    folder = tmp_path / "data" / "wnut16"
    folder.mkdir(parents=True)
    sentence = "alice\tB-person\nwent\tO\nto\tO\nparis\tB-geo-loc\n\nbob\tB-person\nworks\tO\nat\tO\nacme\tB-company\n\n"
    for name in ("train.txt", "validation.txt"):
        (folder / name).write_text(sentence * 30)
    monkeypatch.setattr(common, "REPO_ROOT", tmp_path)
    from bench.taskbert_side import train_taskbert
    from taskbert.plugins import get_plugin_manager

    words, tags, ev_words, ev_tags = load_wnut(48, 16)
    r = train_taskbert("token_classification", words, tags, ev_words, ev_tags, model=tiny_encoder,
                       max_length=32, batch_size=8, max_steps=4, warmup_steps_excluded=1, lr=1e-3)
    assert r["steps"] == 4 and r["timed_steps"] == 3
    assert r["real_tokens_per_s"] > 0 and 0 < r["padding_efficiency"] <= 1
    assert 0 <= r["accuracy"] <= 1 and r["f1"] is not None
    assert get_plugin_manager().get_plugin("bench-step-meter") is None  # unregistered afterwards
