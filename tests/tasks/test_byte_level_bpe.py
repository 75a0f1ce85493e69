"""Byte-level BPE tokenizers (RoBERTa, ModernBERT), and SentencePiece-style ones: in tagging each word keeps the space marker
it has in running text, whether or not the tokenizer adds a prefix space; QA answers keep their
characters whether or not the offsets hold the space before a word."""

import pytest

from taskbert_plugins.tagging import TokenClassification
from taskbert_plugins.tagging.task import word_prefix

CORPUS = ["Alice lives in Paris and Bob lives in Rome", "Paris is big", "lives of Alice"] * 20
WORDS = ["Alice", "lives", "in", "Paris"]


def byte_level(add_prefix_space):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>")


@pytest.mark.parametrize("add_prefix_space", [False, True])
def test_every_word_starts_with_the_space_marker(add_prefix_space):
    tokenizer = byte_level(add_prefix_space)
    (pieces, empty), = TokenClassification().word_pieces([{"tokens": WORDS, "where": "f:1"}], tokenizer)
    tokens = [tokenizer.convert_ids_to_tokens(p) for p in pieces]
    assert tokens == [["ĠAlice"], ["Ġlives"], ["Ġin"], ["ĠParis"]] and empty == []
    # the words after the first read as in running text
    running = tokenizer.convert_ids_to_tokens(tokenizer(" ".join(WORDS), add_special_tokens=False)["input_ids"])
    assert running[1:] == ["Ġlives", "Ġin", "ĠParis"]
    assert word_prefix(tokenizer) == ("" if add_prefix_space else " ")


def test_wordpiece_tokenizers_get_no_prefix():
    from taskbert.testing import make_tokenizer

    assert word_prefix(make_tokenizer(["alice", "lives"])) == ""


@pytest.mark.parametrize("trim_offsets", [True, False])
def test_qa_answers_keep_their_characters_with_byte_level_bpe(trim_offsets):
    """A byte-level BPE token's offsets may include the space before its word (no
    ``trim_offsets``): the answer span still covers the answer, and the text decoded from
    the answer's own positions is the answer without that space."""
    from tokenizers import processors

    from taskbert_plugins.qa.decode import answer_token_span, decode_answer, encode_windows

    tokenizer = byte_level(False)
    tokenizer.backend_tokenizer.post_processor = processors.RobertaProcessing(
        ("</s>", 2), ("<s>", 0), trim_offsets=trim_offsets)
    context = "Bob lives in Rome and Alice lives in Paris"
    start = context.index("Paris")
    (row,) = encode_windows([{"question": "where does Alice live", "context": context}], tokenizer, 64, 8, 16)
    first, last = answer_token_span(row["offsets"], row["passage_start"], start, start + 5)
    assert first and context[row["offsets"][first - row["passage_start"]][0]:
                             row["offsets"][last - row["passage_start"]][1]].strip() == "Paris"
    n = len(row["input_ids"])
    starts, ends = [-10.0] * n, [-10.0] * n
    starts[first], ends[last] = 10.0, 10.0
    answer = decode_answer(context, [(starts, ends, row["passage_start"], row["offsets"])])
    assert answer["text"] == "Paris" and (answer["start"], answer["end"]) == (start, start + 5)


def unigram():
    """A SentencePiece-style Unigram tokenizer (Metaspace ``▁`` word starts), as XLM-R's: the
    corpus words as ``▁word`` pieces, their letters as fallbacks."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for line in CORPUS for w in line.split()})
    letters = sorted({c for w in words for c in w})
    vocab = [(t, 0.0) for t in ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]]
    vocab += [("\u2581" + w, -1.0) for w in words] + [("\u2581", -5.0)] + [(c, -6.0) for c in letters]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")
    tok.decoder = decoders.Metaspace(prepend_scheme="always")
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>")


@pytest.mark.parametrize("kind", ["byte_level_bpe", "unigram"])
def test_a_roberta_tagger_with_a_subword_vocabulary_end_to_end(kind, tmp_path):
    """A RoBERTa with a byte-level BPE tokenizer (no add_prefix_space) or a SentencePiece-style
    Unigram one learns a tagging task read word by word; best/ reloads in
    AutoModelForTokenClassification, and each word (given its leading space where the
    tokenizer marks words by it) gets the tag ``taskbert predict`` gives."""
    import json
    import random

    import torch
    from click.testing import CliRunner
    from transformers import AutoModelForTokenClassification, AutoTokenizer, RobertaConfig, RobertaModel

    from taskbert.cli import cli
    from taskbert.testing import run_spec

    tokenizer = byte_level(False) if kind == "byte_level_bpe" else unigram()
    assert word_prefix(tokenizer) == (" " if kind == "byte_level_bpe" else "")
    folder = str(tmp_path / "enc")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    RobertaModel(RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=64 + 2, type_vocab_size=1,
                               pad_token_id=tokenizer.pad_token_id)).save_pretrained(folder)
    rng = random.Random(1)
    names, places, filler = ["Alice", "Bob"], ["Paris", "Rome"], ["lives", "in", "and", "of", "is", "big"]

    def sentence():
        words = [rng.choice(names + places + filler) for _ in range(rng.randint(3, 8))]
        return words, ["PER" if w in names else "LOC" if w in places else "O" for w in words]

    for split, n in (("train", 200), ("dev", 20)):
        with open(tmp_path / f"{split}.jsonl", "w", encoding="utf-8") as fh:
            for _ in range(n):
                words, tags = sentence()
                fh.write(json.dumps({"tokens": words, "tags": tags}) + "\n")
    spec = {"task": "token_classification", "encoder": {"model": folder, "max_length": 32},
            "data": {"train": str(tmp_path / "train.jsonl"), "validation": str(tmp_path / "dev.jsonl")},
            "task_options": {"scheme": "none"},
            "train": {"epochs": 4, "batch_size": 16, "lr": 3e-3, "loggers": []}, "output": str(tmp_path / "run")}
    metrics, run_dir = run_spec(spec, str(tmp_path))
    assert metrics["validation/accuracy"] > 0.9
    inputs = tmp_path / "in.jsonl"
    words = ["Bob", "lives", "in", "Rome"]
    inputs.write_text(json.dumps({"tokens": words}) + "\n")
    result = CliRunner().invoke(cli, ["predict", run_dir, str(inputs)])
    assert result.exit_code == 0, result.output
    ours = json.loads(result.stdout.splitlines()[0])["tags"]
    assert ours == ["PER", "O", "O", "LOC"]
    model = AutoModelForTokenClassification.from_pretrained(f"{run_dir}/best").eval()
    tok = AutoTokenizer.from_pretrained(f"{run_dir}/best")
    enc = tok([[word_prefix(tok) + w for w in words]], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits[0]
    firsts = [enc.word_ids(0).index(i) for i in range(len(words))]
    assert [model.config.id2label[int(logits[i].argmax())] for i in firsts] == ours
