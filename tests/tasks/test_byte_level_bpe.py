"""Byte-level BPE tokenizers (RoBERTa, ModernBERT): in tagging each word keeps the space marker
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
