"""Synthetic ``datasets.Dataset`` objects for the tests of the datasets readers: built with
``Dataset.from_dict``, with ``ClassLabel`` and ``Sequence(ClassLabel)`` features, and written
as a ``save_to_disk`` folder, a Parquet or an Arrow file (nothing downloads)."""

import os
import random
import shutil

import datasets
from datasets import ClassLabel, Features, Sequence, Value

from taskbert.testing import FILLER, NEGATIVE, POSITIVE

#: ClassLabel order on purpose not the sorted one, so id2label shows where it came from
POLARITY = ["positive", "negative"]
TAGS = ["O", "B-per", "B-loc"]
PEOPLE, CITIES = ["alice", "bob"], ["paris", "london"]
WORDS = POSITIVE + NEGATIVE + FILLER + PEOPLE + CITIES + "lives in who where does live ?".split()


def _polar(rng):
    positive = rng.random() < 0.5
    words = [rng.choice(FILLER) for _ in range(rng.randint(3, 8))]
    words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if positive else NEGATIVE))
    return " ".join(words), 0 if positive else 1


def polarity(n, seed, text="sentence"):
    """``{sentence, label: ClassLabel(positive, negative)}``: the polar word decides."""
    rng = random.Random(seed)
    rows = [_polar(rng) for _ in range(n)]
    features = Features({text: Value("string"), "label": ClassLabel(names=POLARITY)})
    return datasets.Dataset.from_dict({text: [t for t, _ in rows], "label": [y for _, y in rows]}, features)


def pairs(n, seed):
    """``{premise, hypothesis, label}``: the hypothesis's polar word decides."""
    rng = random.Random(seed)
    a = [" ".join(rng.choice(FILLER) for _ in range(4)) for _ in range(n)]
    b = [_polar(rng) for _ in range(n)]
    features = Features({"premise": Value("string"), "hypothesis": Value("string"),
                         "label": ClassLabel(names=POLARITY)})
    return datasets.Dataset.from_dict({"premise": a, "hypothesis": [t for t, _ in b],
                                       "label": [y for _, y in b]}, features)


def tagging(n, seed):
    """conll2003's layout: ``{tokens, ner_tags: Sequence(ClassLabel(O, B-per, B-loc))}``."""
    rng = random.Random(seed)
    tokens, tags = [], []
    for _ in range(n):
        words, ids = [], []
        for _ in range(rng.randint(3, 8)):
            r = rng.random()
            word, tag = ((rng.choice(PEOPLE), 1) if r < 0.2 else (rng.choice(CITIES), 2) if r < 0.4
                         else (rng.choice(FILLER), 0))
            words.append(word), ids.append(tag)
        tokens.append(words), tags.append(ids)
    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=TAGS))})
    return datasets.Dataset.from_dict({"tokens": tokens, "ner_tags": tags}, features)


def squad(n, seed):
    """The layout of ``squad``/``squad_v2`` on the hub: id, title, context, question and
    ``answers: {text: [...], answer_start: [...]}``."""
    rng = random.Random(seed)
    rows = {"id": [], "title": [], "context": [], "question": [], "answers": []}
    for i in range(n):
        person, city = rng.choice(PEOPLE), rng.choice(CITIES)
        before = " ".join(rng.choice(FILLER) for _ in range(rng.randint(2, 6)))
        context = f"{before} . {person} lives in {city} . the movie was"
        start = context.index(f"{person} lives")
        where = rng.random() < 0.5
        text, at = (city, start + len(person) + len(" lives in ")) if where else (person, start)
        rows["id"].append(f"q{seed}-{i}"), rows["title"].append("synthetic"), rows["context"].append(context)
        rows["question"].append(f"where does {person} live ?" if where else f"who lives in {city} ?")
        rows["answers"].append({"text": [text], "answer_start": [at]})
    features = Features({"id": Value("string"), "title": Value("string"), "context": Value("string"),
                         "question": Value("string"),
                         "answers": Sequence({"text": Value("string"), "answer_start": Value("int32")})})
    return datasets.Dataset.from_dict(rows, features)


def documents(n, seed):
    """``{text}``: documents of a few sentences each, for pretraining."""
    rng = random.Random(seed)
    docs = [" ".join(" ".join(rng.choice(FILLER + PEOPLE + CITIES) for _ in range(rng.randint(4, 9))).capitalize()
                     + "." for _ in range(rng.randint(2, 5))) for _ in range(n)]
    return datasets.Dataset.from_dict({"text": docs}, Features({"text": Value("string")}))


def write(ds, folder, name, kind):
    """Write ``ds`` as ``kind`` (``disk``: a save_to_disk folder, ``parquet``, ``arrow``) under
    ``folder``; return its path."""
    path = os.path.join(str(folder), name)
    if kind == "disk":
        ds.save_to_disk(path)
    elif kind == "parquet":
        path += ".parquet"
        ds.to_parquet(path)
    else:   # the Arrow file save_to_disk writes (the stream format datasets uses)
        ds.save_to_disk(path + "-tmp")
        shutil.copy(os.path.join(path + "-tmp", "data-00000-of-00001.arrow"), path + ".arrow")
        shutil.rmtree(path + "-tmp")
        path += ".arrow"
    return path


def fake_hub_cache(cache, repo, splits, config="default"):
    """Lay out ``{split: Dataset}`` in a ``datasets`` cache folder as ``load_dataset(repo)``
    leaves it after a download, so offline mode finds it (``datasets``' own cache layout:
    ``namespace___name/config/version/hash/name-split.arrow`` and ``dataset_info.json``)."""
    name = repo.split("/")[-1]
    folder = os.path.join(str(cache), repo.replace("/", "___"), config, "0.0.0", "0123456789abcdef")
    os.makedirs(folder, exist_ok=True)
    split_dict = datasets.SplitDict(dataset_name=name)
    features = None
    for split, ds in splits.items():
        tmp = os.path.join(str(cache), f"tmp-{split}")
        ds.save_to_disk(tmp)
        shutil.copy(os.path.join(tmp, "data-00000-of-00001.arrow"), os.path.join(folder, f"{name}-{split}.arrow"))
        shutil.rmtree(tmp)
        split_dict.add(datasets.SplitInfo(name=split, num_examples=len(ds), dataset_name=name))
        features = ds.features
    datasets.DatasetInfo(features=features, config_name=config, dataset_name=name,
                         splits=split_dict).write_to_directory(folder)
    return str(cache)
