"""Raw text for pretraining: the ``documents`` reader, sentence splitting, byte ranges.

Also the synthetic corpus the other pretraining tests import: each document keeps to one
topic, so masked words are guessable from context and a random B usually changes topic.
"""

import random

import pytest

from taskbert import DataError
from taskbert_plugins.pretraining.text import (
    detect_layout, document_sentences, document_texts, read_documents, split_sentences)

TOPICS = {
    "animals": "cat dog bird fish horse cow".split(),
    "colors": "red blue green yellow white black".split(),
    "cities": "paris london rome berlin madrid vienna".split(),
    "food": "bread cheese apple rice soup cake".split(),
}
TEMPLATES = ["the {a} and the {b} are here.", "a {a} likes the {b}.", "we saw the {a} near the {b}.",
             "the {a} is not a {b}."]
#: words in the tiny tokenizer's vocabulary (everything else splits into characters)
WORDS = sorted({w for ws in TOPICS.values() for w in ws}
               | {w.strip(".") for t in TEMPLATES for w in t.split() if "{" not in w} | {"."})
#: words outside the vocabulary: they become several word pieces
LONG_WORDS = "bluebird catfish redhorse".split()


def documents(n_docs, seed, min_sentences=2, max_sentences=8, long_words=False):
    """``n_docs`` documents, each a list of sentences."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        words = list(TOPICS[rng.choice(sorted(TOPICS))])
        if long_words:
            words += LONG_WORDS
        sentences = []
        for _ in range(rng.randint(min_sentences, max_sentences)):
            a, b = rng.sample(words, 2)
            sentences.append(rng.choice(TEMPLATES).format(a=a, b=b).capitalize())
        docs.append(sentences)
    return docs


def write_corpus(path, docs, layout="blank_line"):
    """Write documents: blank-line separated (one sentence a line) or one per line."""
    with open(path, "w", encoding="utf-8") as fh:
        for sentences in docs:
            if layout == "blank_line":
                fh.write("\n".join(sentences) + "\n\n")
            else:
                fh.write(" ".join(sentences) + "\n")
    return str(path)


# ---------------------------------------------------------------------- tests
def test_blank_line_documents_and_byte_ranges(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes("\ufeffFirst doc line one.\nLine two.\n\n\nSecond doc. Caf\u00e9 au lait.\n\nThird\n".encode())
    records = list(read_documents(str(path), {}))
    assert [n for n, _ in records] == [1, 5, 7]
    assert [r["text"] for _, r in records] == ["First doc line one.\nLine two.",
                                              "Second doc. Caf\u00e9 au lait.", "Third"]
    examples = [{"where": f"{path}:{n}", "path": r["path"], "span": r["span"]} for n, r in records]
    # the text read back from the byte range is the document (the reader's view of it)
    assert [t.strip() for t in document_texts(examples)] == [r["text"] for _, r in records]


def test_layout_auto_detects_one_document_per_line(tmp_path):
    per_line = tmp_path / "a.txt"
    per_line.write_text("doc one. Still one.\ndoc two.\ndoc three.\n")
    blank = tmp_path / "b.txt"
    blank.write_text("\n\ndoc one.\nmore of one.\n\ndoc two.\n")
    assert detect_layout(str(per_line)) == "line" and detect_layout(str(blank)) == "blank_line"
    assert len(list(read_documents(str(per_line), {}))) == 3
    assert len(list(read_documents(str(blank), {}))) == 2
    assert len(list(read_documents(str(blank), {"layout": "line"}))) == 3
    with pytest.raises(DataError, match="layout: 'para'"):
        list(read_documents(str(blank), {"layout": "para"}))
    with pytest.raises(DataError, match="unknown option 'delimiter'"):
        list(read_documents(str(blank), {"delimiter": ","}))


def test_bad_bytes_name_their_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine\n\nbad \xff byte\n")
    with pytest.raises(DataError, match=r"bad.txt:3: not valid utf-8"):
        list(read_documents(str(path), {}))


def test_sentence_splitter():
    text = ('Mr. Smith went to Washington D.C. on Jan. 5. He said "Hello." Then J. R. R. Tolkien '
            'wrote it! Is it? 3 cats came. e.g. this one stays.')
    assert split_sentences(text) == [
        "Mr. Smith went to Washington D.C. on Jan. 5.", 'He said "Hello."',
        "Then J. R. R. Tolkien wrote it!", "Is it?", "3 cats came. e.g. this one stays."]
    assert document_sentences("One. Two.\n\nThree", "regex") == ["One.", "Two.", "Three"]
    assert document_sentences("One. Two.\n\nThree", "lines") == ["One. Two.", "Three"]
