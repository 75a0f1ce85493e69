"""The WordPiece vocabulary trainer and ``taskbert vocab``: saved folders load with
AutoTokenizer and round-trip text."""

import os

import pytest
from click.testing import CliRunner
from transformers import AutoTokenizer

from taskbert.cli import cli
from taskbert.plugins import get_plugin_manager
from taskbert_plugins.pretraining.wordpiece import SPECIAL_TOKENS, train_wordpiece
from test_pretraining_text import WORDS, documents, write_corpus

TEXTS = ["the quick brown fox jumps over the lazy dog",
         "a lazy dog sleeps while the quick fox runs",
         "foxes and dogs are quick or lazy"] * 20


def test_trained_vocab_round_trips_text(tmp_path):
    tok = train_wordpiece(iter(TEXTS), vocab_size=200, min_frequency=1)
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.convert_ids_to_tokens(list(range(5))) == SPECIAL_TOKENS
    assert loaded.mask_token_id == 4 and loaded.pad_token_id == 0
    for text in ["the quick brown fox", "dogs jump over foxes", "The LAZY Fox"]:
        ids = loaded(text)["input_ids"]
        assert ids[0] == loaded.cls_token_id and ids[-1] == loaded.sep_token_id
        assert loaded.unk_token_id not in ids
        assert loaded.decode(ids, skip_special_tokens=True) == text.lower()
    # an unseen word made of seen letters splits into pieces instead of [UNK]
    pieces = loaded.tokenize("foxdog")
    assert len(pieces) > 1 and pieces[1].startswith("##")
    assert loaded.decode(loaded("foxdog")["input_ids"], skip_special_tokens=True) == "foxdog"
    pair = loaded("a fox", "a dog")
    assert pair["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]


def test_cased_vocab_keeps_case(tmp_path):
    tok = train_wordpiece(iter(["Paris and London", "London or Paris"] * 10), vocab_size=100,
                          min_frequency=1, lowercase=False)
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.decode(loaded("London and Paris")["input_ids"], skip_special_tokens=True) == "London and Paris"


def test_vocab_command(tmp_path):
    get_plugin_manager().hook.taskbert_register_commands(cli=cli)
    corpus = write_corpus(tmp_path / "c.txt", documents(40, 1))
    out = tmp_path / "vocab"
    result = CliRunner().invoke(cli, ["vocab", corpus, "-o", str(out), "--vocab-size", "80",
                                      "--min-frequency", "1"])
    assert result.exit_code == 0, result.output
    assert "80-token WordPiece vocabulary" in result.output or "-token WordPiece" in result.output
    loaded = AutoTokenizer.from_pretrained(out)
    assert 30 < len(loaded) <= 80
    assert loaded.decode(loaded("the cat likes the dog.")["input_ids"], skip_special_tokens=True) == \
        "the cat likes the dog."
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]
    (tmp_path / "empty.txt").write_text("\n\n")
    bad = CliRunner().invoke(cli, ["vocab", str(tmp_path / "empty.txt"), "-o", str(tmp_path / "v2")])
    assert bad.exit_code == 2 and "error: vocab:" in bad.output
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    busy = CliRunner().invoke(cli, ["vocab", corpus, "-o", str(tmp_path / "busy")])
    assert busy.exit_code == 2 and "holds other files" in busy.output
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_vocab_command_trains_a_byte_level_bpe(tmp_path):
    """``--kind bpe``: RoBERTa's byte-level BPE (``<s> a </s>``, every byte known, case kept),
    which loads with AutoTokenizer and round-trips text it never saw, emoji included."""
    get_plugin_manager().hook.taskbert_register_commands(cli=cli)
    corpus = write_corpus(tmp_path / "c.txt", documents(40, 1))
    out = tmp_path / "bpe"
    result = CliRunner().invoke(cli, ["vocab", corpus, "-o", str(out), "--kind", "bpe", "--vocab-size", "400",
                                      "--min-frequency", "1"])
    assert result.exit_code == 0 and "byte-level BPE vocabulary" in result.output, result.output
    loaded = AutoTokenizer.from_pretrained(out)
    assert 256 < len(loaded) <= 400 and loaded.convert_ids_to_tokens([0, 1, 2, 3, 4]) == \
        ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    ids = loaded("The Cat likes ☕ and Zürich.")["input_ids"]
    assert ids[0] == loaded.bos_token_id and ids[-1] == loaded.eos_token_id and loaded.unk_token_id not in ids
    assert loaded.decode(ids, skip_special_tokens=True) == "The Cat likes ☕ and Zürich."
    bad = CliRunner().invoke(cli, ["vocab", corpus, "-o", str(tmp_path / "b2"), "--kind", "bpe", "--cased"])
    assert bad.exit_code == 2 and "--cased: a byte-level BPE vocabulary is cased already" in bad.output


def test_scratch_vocab_reads_data_train_with_the_spec_format(tmp_path):
    """``data.format: parquet`` on a file named ``corpus.bin``: the vocabulary is learnt from
    its ``text_field`` column, read as the run reads it (not as text by the extension)."""
    datasets = pytest.importorskip("datasets")
    from taskbert.config.spec import spec_from_dict
    from taskbert_plugins.pretraining.wordpiece import scratch_tokenizer

    parquet = str(tmp_path / "corpus.bin")
    datasets.Dataset.from_dict({"body": ["\n".join(d) for d in documents(40, 1)]}).to_parquet(parquet)
    spec = spec_from_dict({
        "task": "pretraining", "encoder": {"model": "scratch", "max_length": 32},
        "data": {"train": parquet, "format": "parquet"}, "output": str(tmp_path / "run"),
        "task_options": {"text_field": "body", "scratch": {"vocab_size": 200, "min_frequency": 1,
                                                           "max_positions": 64}}}, str(tmp_path))
    tok = scratch_tokenizer(spec, str(tmp_path / "cache"))
    assert set(WORDS) <= set(tok.get_vocab())   # every corpus word is one token
    assert tok.tokenize("the cat likes the dog.") == ["the", "cat", "likes", "the", "dog", "."]
