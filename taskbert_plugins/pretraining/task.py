"""``pretraining``: BERT's masked LM (80/10/10) and next-sentence prediction on raw text.

Continued pretraining adapts a pretrained encoder to a domain; with
``task_options.scratch`` a BERT of the given size is trained from scratch on a WordPiece
vocabulary learnt from the corpus. The head is ``BertPreTrainingHeads`` (or the MLM half
alone) with the decoder tied to the word embeddings, named as in ``BertForPreTraining``,
so a run's ``best/`` loads with plain transformers and as ``encoder.model`` of a later
fine-tuning spec.

Data flow: the ``documents`` reader yields byte ranges of documents (examples hold no
text); ``encode_all`` builds or reuses memory-mapped shards of A/B instances with static
masks (:mod:`.pretraining_data`) and returns light rows (a view into the token memmap and
four integers). ``forward`` derives token types from ``a_len`` and applies the stored
masks, or in ``dynamic`` mode draws fresh ones per training batch; evaluation always uses
the stored masks, so held-out figures are comparable from one evaluation to the next.
"""

import math
import os
import sys
from dataclasses import dataclass, field
from typing import Literal, Optional

import numpy as np
import torch
from torch import nn

from taskbert import DataError, SpecError, Task

from .data import BuildConfig, build, open_shards, tokenized_documents
from taskbert_plugins.own_heads import head_layout

from .heads import OwnMLMHead, PretrainingHead, init_bert_weights  # noqa: F401  (init_bert_weights: public)
from .masking import apply_masks, choose_masks, vocab_tables


@dataclass(frozen=True)
class ScratchOptions:
    """``task_options.scratch``: the architecture and size of an encoder trained from scratch,
    and its vocabulary."""

    architecture: Literal["bert", "roberta"] = field(default="bert", metadata={
        "help": "bert: a WordPiece vocabulary and a BERT; roberta: a byte-level BPE vocabulary and a "
                "RoBERTa (masked LM only: set nsp: false)"})
    layers: int = field(default=4, metadata={"min": 1, "help": "transformer layers"})
    hidden: int = field(default=256, metadata={"min": 8, "help": "hidden size"})
    heads: int = field(default=4, metadata={"min": 1, "help": "attention heads (divide hidden)"})
    intermediate: Optional[int] = field(default=None, metadata={
        "min": 1, "help": "feed-forward size; default 4 x hidden"})
    max_positions: int = field(default=512, metadata={"min": 8})
    dropout: float = field(default=0.1, metadata={"min": 0, "max": 1})
    vocab_size: int = field(default=30522, metadata={"min": 10, "help": "vocabulary to learn (WordPiece or BPE)"})
    min_frequency: int = field(default=2, metadata={"min": 1})
    lowercase: bool = True

    def __post_init__(self):
        if self.hidden % self.heads:
            raise ValueError(f"scratch.heads: {self.heads} does not divide scratch.hidden {self.hidden}")


@dataclass(frozen=True)
class PretrainingOptions:
    """Options of the ``pretraining`` task."""

    nsp: bool = field(default=True, metadata={"help": "next-sentence prediction besides masked LM"})
    masking: Literal["dynamic", "static"] = field(default="dynamic", metadata={
        "help": "static: masks drawn once into the data; dynamic: drawn per training batch"})
    mask_prob: float = field(default=0.15, metadata={"gt": 0, "max": 1, "help": "share of tokens chosen"})
    mask_share: float = field(default=0.8, metadata={"min": 0, "max": 1, "help": "chosen -> [MASK]"})
    random_share: float = field(default=0.1, metadata={"min": 0, "max": 1, "help": "chosen -> random token"})
    whole_word_masking: bool = field(default=False, metadata={
        "help": "choose whole words: a piece and its ## continuations together"})
    max_predictions_per_seq: Optional[int] = field(default=None, metadata={
        "min": 1, "help": "cap on chosen tokens per sequence; default ceil(max_length * mask_prob)"})
    short_seq_prob: float = field(default=0.1, metadata={"min": 0, "max": 1,
        "help": "share of instances given a random shorter target length"})
    dupe_factor: int = field(default=1, metadata={"min": 1,
        "help": "copies of the training text, each with other pairs and masks"})
    sentence_split: Literal["regex", "lines"] = field(default="regex", metadata={
        "help": "regex: split lines at sentence ends; lines: each line is one sentence"})
    text_field: str = field(default="text", metadata={
        "predict": True, "help": "record field with the text (jsonl/csv input)"})
    data_seed: int = field(default=12345, metadata={"help": "seed of pairing and static masks"})
    cache_dir: Optional[str] = field(default=None, metadata={"path": True,
        "help": "where shards and vocabularies are kept; default ~/.cache/taskbert/pretraining"})
    shard_size: int = field(default=100_000, metadata={"min": 1, "help": "instances per shard"})
    eval_before_training: bool = field(default=True, metadata={
        "help": "evaluate on validation at step 0, so metrics.jsonl has the starting figures"})
    scratch: Optional[ScratchOptions] = field(default=None, metadata={
        "help": "train a new encoder of this size (and its vocabulary) instead of encoder.model"})

    def __post_init__(self):
        if self.nsp and self.scratch is not None and self.scratch.architecture != "bert":
            raise ValueError(f"nsp: next-sentence prediction needs BERT's head; scratch.architecture "
                             f"{self.scratch.architecture!r} trains masked LM alone: set nsp: false")
        if self.mask_share + self.random_share > 1:
            raise ValueError(f"mask_share + random_share is {self.mask_share + self.random_share}; "
                             f"must be <= 1 (the rest of the chosen tokens stay)")


#: the longest window ``encode_all`` packs; a longer ask means "unlimited" (whole documents)
MAX_WINDOW = 65_536


def default_cache_dir():
    """``$XDG_CACHE_HOME/taskbert/pretraining`` (``~/.cache`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "taskbert", "pretraining")


def nsp_capable(config):
    """Whether next-sentence prediction fits the encoder: BERT's heads, two token types."""
    return getattr(config, "model_type", None) == "bert" and getattr(config, "type_vocab_size", 0) >= 2


class Pretraining(Task):
    """Masked LM + next-sentence prediction on documents of raw text."""

    name = "pretraining"
    description = "masked LM (80/10/10) + next-sentence prediction on raw text; continued or from scratch"
    Options = PretrainingOptions
    default_metric = "perplexity"
    pad_fields = {}
    default_format = "documents"
    hf_architecture = "BertForPreTraining"
    report_labels = None

    def __init__(self, options=None):
        super().__init__(options)
        self.hf_architecture = "BertForPreTraining" if self.options.nsp else "BertForMaskedLM"
        self._stores = []      # memory-mapped shards; rows point in here by (store, item)
        self._vocab_size = None
        self.tables = None

    # ------------------------------------------------------------------ data
    def example_from_record(self, record, where, labelled=True):
        if "span" in record:   # reader "documents": keep the byte range, not the text
            example = {"where": where, "path": record["path"], "span": tuple(record["span"])}
            if record.get("encoding", "utf-8") != "utf-8":
                example["encoding"] = record["encoding"]
            return example
        text = record.get(self.options.text_field)
        if self.options.text_field not in record:
            raise DataError(f"{where}: missing text field {self.options.text_field!r}; record has: "
                            f"{', '.join(map(str, record)) or 'nothing'} (set task_options.text_field)")
        if not isinstance(text, str):
            raise DataError(f"{where}: field {self.options.text_field!r} must hold the document text, "
                            f"got {text!r} (set task_options.text_field)")
        if not text.strip():
            return None
        ref = getattr(record, "row_ref", None)   # a memory-mapped datasets row: keep where it is
        if ref is not None:
            return {"where": where, "rows": ref[:2], "row": ref[2], "column": self.options.text_field}
        return {"where": where, "text": text}

    def record_from_text(self, line):
        return {self.options.text_field: line}

    def setup(self, examples):
        if self.options.nsp:
            for split, exs in examples.items():
                if len(exs) < 2:
                    raise DataError(f"data.{split}: next-sentence prediction needs at least 2 documents, "
                                    f"found {len(exs)} in {exs[0]['where'].rsplit(':', 1)[0]}; "
                                    f"add documents or set task_options.nsp: false")

    def build_config(self, max_length, train=True):
        """The :class:`BuildConfig` for one split (``dupe_factor`` applies to train only)."""
        o = self.options
        return BuildConfig(
            max_length=max_length, nsp=o.nsp, short_seq_prob=o.short_seq_prob,
            dupe_factor=o.dupe_factor if train else 1, mask_prob=o.mask_prob,
            max_predictions=o.max_predictions_per_seq or math.ceil(max_length * o.mask_prob),
            whole_word=o.whole_word_masking, mask_share=o.mask_share, random_share=o.random_share,
            sentence_split=o.sentence_split, seed=o.data_seed, shard_size=o.shard_size)

    def cache_dir(self):
        """Folder of the shard caches and trained vocabularies."""
        return self.options.cache_dir or default_cache_dir()

    def truncation(self, examples, tokenizer, max_length):
        """Instances are packed up to ``max_length``, never cut as a whole; what is lost
        are the tokens of sentences longer than a window (``taskbert debug data``)."""
        window = max_length - (3 if self.options.nsp else 2)
        lengths = [len(s) for doc in tokenized_documents(examples, tokenizer, self.options.sentence_split)
                   for s in doc]
        return {"sentences": (sum(n > window for n in lengths), len(lengths))}

    def encode_all(self, examples, tokenizer, max_length, split=None):
        """Rows of pretraining instances; ``dupe_factor`` applies to ``split="train"`` only."""
        if max_length > MAX_WINDOW:
            # "unlimited" (taskbert debug data looks for duplicates): one row per document
            # with all its tokens; nothing is masked or cached
            return [{"input_ids": [t for s in doc for t in s], "example_index": i} for i, doc in
                    enumerate(tokenized_documents(examples, tokenizer, self.options.sentence_split))]
        if tokenizer.mask_token_id is None:
            raise SpecError("encoder: the tokenizer has no mask token; masked LM needs one")
        self.tables = vocab_tables(tokenizer, self._vocab_size or len(tokenizer))
        where = examples[0]["where"].rsplit(":", 1)[0] if examples else "data"
        folder, built = build(examples, tokenizer, self.tables,
                              self.build_config(max_length, train=split == "train"),
                              self.cache_dir(), where)
        meta, shards = open_shards(folder)
        if not meta["instances"]:
            raise DataError(f"{where}: gave no pretraining instances (do the documents hold text?)")
        print(f"pretraining data ({split or 'input'}): {meta['instances']} instances from "
              f"{meta['documents']} documents, {'built' if built else 'reused'} {folder}", file=sys.stderr)
        rows = []
        for shard in shards:
            store = len(self._stores)
            self._stores.append(shard)
            tokens = np.asarray(shard["tokens"])   # a plain view of the map: 120 B a row, not 600
            for item, (off, n, a_len, label, doc_a, _) in enumerate(shard["index"].tolist()):
                rows.append({"input_ids": tokens[off:off + n], "a_len": a_len, "nsp_label": label,
                             "store": store, "item": item, "example_index": doc_a})
        return rows

    # ----------------------------------------------------------------- model
    def check_encoding(self, tokenizer, max_length, config):
        if self.options.nsp and not nsp_capable(config):
            raise SpecError(f"task_options.nsp: next-sentence prediction needs BERT's pretraining head and "
                            f"two segment types; this encoder is {getattr(config, 'model_type', '?')!r} with "
                            f"{getattr(config, 'type_vocab_size', 0) or 'no'} token types: set task_options.nsp: "
                            f"false to train masked LM alone (with its own head)")

    def build_head(self, encoder):
        config = encoder.config
        self._vocab_size = config.vocab_size
        self._segments = getattr(config, "type_vocab_size", 0) >= 2   # else every token is type 0
        if head_layout(self, config, "mlm") == "own":
            if self.options.nsp:
                self.check_encoding(None, None, config)   # a source without a tokenizer skipped it
            head = OwnMLMHead(encoder)
            self.hf_architecture = head.architecture
            return head
        return PretrainingHead(config, self.options.nsp, encoder.get_input_embeddings())

    def state_dict(self):
        return {"head_layout": getattr(self, "head_layout", None)}

    def load_state_dict(self, state):
        self.head_layout = state.get("head_layout", "legacy")

    def _static_masks(self, batch):
        out = []
        for store, item in zip(batch["store"].tolist(), batch["item"].tolist()):
            pos = np.asarray(self._stores[store]["mlm_pos"][item], dtype=np.int64)
            keep = pos >= 0
            out.append((pos[keep], np.asarray(self._stores[store]["mlm_ids"][item], dtype=np.int64)[keep]))
        return out

    def _dynamic_masks(self, input_ids, attention_mask):
        # a NumPy generator seeded from torch's RNG: train.seed fixes it, checkpoints replay it
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        o = self.options
        cap = o.max_predictions_per_seq or math.ceil(input_ids.size(1) * o.mask_prob)
        ids, lengths = input_ids.cpu().numpy(), attention_mask.sum(1).tolist()
        return [choose_masks(ids[i, :n], rng, self.tables, o.mask_prob, cap, o.whole_word_masking,
                             o.mask_share, o.random_share) for i, n in enumerate(lengths)]

    def prepare_batch(self, batch, training):
        """Segment ids from each row's first-segment length, and the masked input ids with
        their ``mlm_labels`` (-100: not predicted): drawn now in training with dynamic
        masking, else the row's stored masks."""
        ids, attention = batch["input_ids"], batch["attention_mask"]   # (batch, seq)
        positions = torch.arange(ids.size(1), device=ids.device)
        token_types = ((positions[None, :] >= batch["a_len"][:, None]) & attention.bool()).long()
        if not getattr(self, "_segments", True):
            token_types = torch.zeros_like(token_types)
        if training and self.options.masking == "dynamic":
            masks = self._dynamic_masks(ids, attention)
        else:
            masks = self._static_masks(batch)
        inputs, labels = apply_masks(ids, masks)
        return {**batch, "input_ids": inputs, "token_type_ids": token_types, "mlm_labels": labels}

    def on_train_start(self, trainer):
        """Evaluate before the first step so the starting perplexity is on record (step 0)."""
        if not self.options.eval_before_training or trainer.step or "validation" not in trainer.rows:
            return
        world = getattr(trainer, "world", None)
        if world is not None and world.enabled:
            return   # called on the main process only; evaluation needs every rank
        _, metrics = trainer.evaluate("validation")
        trainer.model.train()
        metrics.update(epoch=0, step=0)
        trainer.record(metrics)   # metrics.jsonl and the logger hook, like every evaluation

    # --------------------------------------------------------------- outputs
    def collect(self, out, batch):
        n = out["rows"]
        logits, labels, rows = out["mlm_logits"].float(), out["mlm_labels"], out["mlm_rows"]
        token_loss = nn.functional.cross_entropy(logits, labels, reduction="none")
        zeros = torch.zeros(n, dtype=torch.float, device=logits.device)
        masked = zeros.index_add(0, rows, torch.ones_like(token_loss)).tolist()
        correct = zeros.index_add(0, rows, (logits.argmax(-1) == labels).float()).tolist()
        loss_sum = zeros.index_add(0, rows, token_loss).tolist()
        nsp = [None] * n
        if "nsp_logits" in out:
            nsp = (out["nsp_logits"].argmax(-1) == out["nsp_labels"]).tolist()
        return [{"masked": int(masked[i]), "correct": int(correct[i]), "loss": loss_sum[i], "nsp": nsp[i]}
                for i in range(n)]

    def decode(self, results, rows, examples):
        docs = [{"document": ex["where"], "instances": 0, "masked_tokens": 0, "mlm_correct": 0,
                 "mlm_loss_sum": 0.0, "nsp_pairs": 0, "nsp_correct": 0} for ex in examples]
        for row, res in zip(rows, results):
            d = docs[row["example_index"]]
            d["instances"] += 1
            d["masked_tokens"] += res["masked"]
            d["mlm_correct"] += res["correct"]
            d["mlm_loss_sum"] += res["loss"]
            if res["nsp"] is not None:
                d["nsp_pairs"] += 1
                d["nsp_correct"] += int(res["nsp"])
        for d in docs:
            d["mlm_accuracy"] = round(d["mlm_correct"] / d["masked_tokens"], 6) if d["masked_tokens"] else None
            d["mlm_loss_sum"] = round(d["mlm_loss_sum"], 6)
        return docs

    def score(self, predictions, examples):
        masked = sum(p["masked_tokens"] for p in predictions)
        if not masked:
            return {}
        metrics = {"mlm_accuracy": sum(p["mlm_correct"] for p in predictions) / masked,
                   "perplexity": math.exp(min(50.0, sum(p["mlm_loss_sum"] for p in predictions) / masked))}
        pairs = sum(p["nsp_pairs"] for p in predictions)
        if pairs:
            metrics["nsp_accuracy"] = sum(p["nsp_correct"] for p in predictions) / pairs
        return metrics
