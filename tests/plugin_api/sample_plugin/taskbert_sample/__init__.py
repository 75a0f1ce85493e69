"""A third-party task, installed through the ``taskbert`` entry-point group.

``mean_pool_classification`` labels a text from the mean of its token vectors instead
of [CLS]. It uses only taskbert's public API, as any plugin package would.
"""

from dataclasses import dataclass

from torch import nn

import taskbert
from taskbert import masked_mean, softmax_list


@dataclass(frozen=True)
class Options:
    text_field: str = "text"
    label_field: str = "label"


class Head(taskbert.Head):
    def __init__(self, hidden, n):
        super().__init__()
        self.out = nn.Linear(hidden, n)

    def forward(self, encoder_out, batch):
        pooled = masked_mean(encoder_out.last_hidden_state, batch["attention_mask"])  # (batch, hidden)
        out = {"logits": self.out(pooled)}
        if "label" in batch:
            out["loss"] = nn.functional.cross_entropy(out["logits"], batch["label"])
        return out


class MeanPoolClassification(taskbert.Task):
    name = "mean_pool_classification"
    description = "sample plugin: one label per text from mean-pooled token vectors"
    Options = Options
    default_metric = "accuracy"
    pad_fields = {}

    def example_from_record(self, record, where, labelled=True):
        if self.options.text_field not in record:
            raise taskbert.DataError(f"{where}: missing field {self.options.text_field!r}")
        return {"text": record[self.options.text_field], "label": record.get(self.options.label_field)}

    def setup(self, examples):
        self.labels = sorted({e["label"] for e in examples["train"]})

    def encode(self, example, tokenizer, max_length):
        ids = tokenizer(example["text"], truncation=True, max_length=max_length)["input_ids"]
        label = self.labels.index(example["label"]) if example["label"] in self.labels else -100
        return [{"input_ids": ids, "label": label}]

    def build_head(self, encoder):
        return Head(encoder.config.hidden_size, len(self.labels))

    def collect(self, out, batch):
        return softmax_list(out["logits"])

    def decode(self, results, rows, examples):
        return [{"label": self.labels[max(range(len(p)), key=p.__getitem__)]} for p in results]

    def score(self, predictions, examples):
        right = sum(p["label"] == e["label"] for p, e in zip(predictions, examples))
        return {"accuracy": right / len(examples)}

    def gold(self, example):
        return example["label"]

    def state_dict(self):
        return {"labels": self.labels}

    def load_state_dict(self, state):
        self.labels = state["labels"]


@taskbert.hookimpl
def taskbert_register_tasks(register):
    register(MeanPoolClassification)
