"""The task contract: the head owns the loss, TaskModel(encoder, head) runs without the task,
the task's lifecycle methods run in the loop, and the kit refuses the old shape."""

import dataclasses

import pytest
import torch
from torch import nn

import taskbert
from taskbert import Head, Task, TaskModel
from taskbert.testing import check_task_class, run_spec, tiny_classification_spec


def _classification_batch(tiny_encoder):
    from taskbert import collate, load_tokenizer
    from taskbert.encoder import load_model
    from taskbert_plugins.classification import SentenceClassification

    task = SentenceClassification()
    examples = [{"text": "a good film", "label": "pos", "where": "a"},
                {"text": "an awful plot and a poor scene", "label": "neg", "where": "b"}]
    task.setup({"train": examples})
    tokenizer = load_tokenizer(tiny_encoder)
    batch = collate(task.encode_all(examples, tokenizer, 16), tokenizer.pad_token_id, task.pad_fields)
    encoder = load_model(tiny_encoder)
    return task, encoder, batch


def test_the_model_runs_alone_and_its_head_computes_the_loss(tiny_encoder):
    task, encoder, batch = _classification_batch(tiny_encoder)
    model = TaskModel(encoder, task.build_head(encoder)).eval()
    out = model(batch)
    assert out["logits"].shape == (2, 2)
    want = nn.functional.cross_entropy(out["logits"], batch["label"])   # worked out apart
    assert torch.allclose(out["loss"], want)
    unlabelled = {k: v for k, v in batch.items() if k != "label"}
    assert "loss" not in model(unlabelled)                             # prediction: no labels
    assert torch.allclose(model(unlabelled)["logits"], out["logits"])


def test_a_frozen_encoder_gets_no_gradients(tiny_encoder):
    task, encoder, batch = _classification_batch(tiny_encoder)
    model = TaskModel(encoder, task.build_head(encoder), train_encoder=False)
    model(batch)["loss"].backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.head.parameters())


def test_a_head_that_gives_no_loss_is_one_clear_error():
    from taskbert.task import batch_loss

    with pytest.raises(taskbert.RunError, match="returned no 'loss' for a labelled batch"):
        batch_loss({"logits": torch.zeros(1)}, {})


def test_the_kit_refuses_a_task_with_its_own_loss_or_forward():
    @dataclasses.dataclass(frozen=True)
    class OldOptions:
        pass

    class Old(Task):
        name = "old_shape"
        description = "loss on the task"
        Options = OldOptions

        def example_from_record(self, record, where, labelled=True):
            return record

        def encode(self, example, tokenizer, max_length):
            return []

        def build_head(self, encoder):
            return Head()

        def loss(self, out, batch):
            return out["logits"].sum()

        def collect(self, out, batch):
            return []

        def decode(self, results, rows, examples):
            return []

    with pytest.raises(AssertionError, match="defines loss or forward"):
        check_task_class(Old)
    del Old.loss
    check_task_class(Old)


def test_lifecycle_methods_run_in_order(tiny_encoder, sentiment_data, tmp_path, monkeypatch):
    from taskbert_plugins.classification import SentenceClassification

    seen = []

    def start(self, trainer):
        seen.append(("start", trainer.step))
        trainer.record({"custom": 1.0, "step": trainer.step})

    def end(self, trainer, metrics):
        seen.append(("end", metrics.get("final")))

    monkeypatch.setattr(SentenceClassification, "on_train_start", start)
    monkeypatch.setattr(SentenceClassification, "on_train_end", end)
    train, dev = sentiment_data
    _, run_dir = run_spec(tiny_classification_spec(tiny_encoder, train, dev, tmp_path / "run", epochs=1),
                          str(tmp_path))
    assert seen == [("start", 0), ("end", True)]
    with open(f"{run_dir}/metrics.jsonl", encoding="utf-8") as fh:
        assert '"custom": 1.0' in fh.readline()          # the task's own record comes first


def test_every_built_in_task_passes_the_kit():
    for name in taskbert.registries().tasks.names():
        check_task_class(taskbert.registries().tasks.get(name))


def test_a_default_metric_the_task_does_not_report_is_refused_before_training(tiny_encoder, sentiment_data,
                                                                              tmp_path):
    """validate (and the kit) catch a default_metric outside reported_metrics(); before, the
    run trained and died after its first evaluation, blaming train.metric."""
    from click.testing import CliRunner

    from taskbert.cli import cli
    from taskbert.plugins import manager as plugin_mod
    from taskbert.testing import write_spec
    from taskbert_plugins.classification import SentenceClassification

    class Misnamed(SentenceClassification):
        name = "misnamed_metric"
        description = "a default metric it never reports"
        default_metric = "f1"

    with pytest.raises(AssertionError, match="default_metric 'f1' is not among"):
        check_task_class(Misnamed)

    class Plugin:
        @staticmethod
        @taskbert.hookimpl
        def taskbert_register_tasks(register):
            register(Misnamed)

    plugin_mod.reset()
    plugin_mod.get_plugin_manager().register(Plugin, name="misnamed-plugin")
    try:
        spec = tiny_classification_spec(tiny_encoder, *sentiment_data, str(tmp_path / "run"))
        spec["task"] = "misnamed_metric"
        result = CliRunner().invoke(cli, ["validate", write_spec(spec, str(tmp_path))])
        assert result.exit_code == 2, result.output
        assert "its default_metric 'f1' is not among the metrics it reports" in result.stderr
    finally:
        plugin_mod.reset()


@pytest.mark.parametrize("metric, higher", [("accuracy", True), ("validation/macro_f1", True),
                                            ("loss", False), ("hamming_loss", False), ("word_error", False),
                                            ("validation/mse", False), ("perplexity", False)])
def test_which_way_is_better(metric, higher):
    """A plugin's *_loss or *_error metric is minimised without a lower_is_better entry."""
    from taskbert_plugins.classification import SentenceClassification

    assert SentenceClassification().greater_is_better(metric) is higher
