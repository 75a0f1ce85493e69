"""Pretraining instances cut from a document's sentences: BERT's A/B pairs for next-sentence
prediction (``nsp_instances``) or plain runs of text for masked LM alone (``mlm_instances``),
each at most ``max_tokens`` long (see :mod:`.data` for the store they read and the shards
they are written to)."""

import numpy as np


def _concat(parts):
    return np.concatenate(parts) if len(parts) > 1 else np.asarray(parts[0])


def _target(rng, max_tokens, short_seq_prob):
    """Tokens to aim for: the maximum, or with ``short_seq_prob`` a random shorter length
    (so the model also sees short inputs, as it will when fine-tuned)."""
    return rng.randint(2, max_tokens) if rng.random() < short_seq_prob else max_tokens


def truncate_pair(a, b, max_tokens, rng):
    """Trim the longer segment, one token at a time from its front or back at random,
    until both fit (BERT's ``truncate_seq_pair``)."""
    a0, a1, b0, b1 = 0, len(a), 0, len(b)
    while (a1 - a0) + (b1 - b0) > max_tokens:
        if a1 - a0 > b1 - b0:
            if rng.random() < 0.5:
                a0 += 1
            else:
                a1 -= 1
        elif rng.random() < 0.5:
            b0 += 1
        else:
            b1 -= 1
    return a[a0:a1], b[b0:b1]


def nsp_instances(doc, store, others, rng, config, owed):
    """Yield ``(a, b, nsp_label, doc_b)`` for one document.

    Sentences are packed into a chunk up to the target length; A is the chunk's first
    1..n-1 sentences. Half the time B is the rest of the chunk (label 0), else text from a
    random other document (label 1; the unused sentences go back). A single-sentence
    chunk pulls in the next sentence for a true B; at a document's end, where none
    exists, B must be random and ``owed[0]`` counts it so a later coin flip for "random"
    is turned into "true" -- NSP labels stay balanced even for short documents.
    """
    sents = store.sentences(doc)
    max_tokens = config.max_length - 3
    target = _target(rng, max_tokens, config.short_seq_prob)
    chunk, length, i = [], 0, 0
    while i < len(sents):
        chunk.append(sents[i])
        length += len(sents[i])
        if i == len(sents) - 1 or length >= target:
            is_random = rng.random() < 0.5
            if is_random and owed[0] > 0 and (len(chunk) >= 2 or i + 1 < len(sents)):
                is_random, owed[0] = False, owed[0] - 1
            if not is_random and len(chunk) == 1:
                if i + 1 < len(sents):
                    i += 1
                    chunk.append(sents[i])
                else:
                    is_random, owed[0] = True, owed[0] + 1
            a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
            a = _concat(chunk[:a_end])
            if is_random:
                other = doc
                while other == doc:   # never the same document
                    other = int(others[rng.randrange(len(others))])
                pool = store.sentences(other)
                b_parts, b_len = [], 0
                for s in pool[rng.randrange(len(pool)):]:
                    b_parts.append(s)
                    b_len += len(s)
                    if b_len >= target - len(a):
                        break
                b, doc_b = _concat(b_parts), other
                i -= len(chunk) - a_end
            else:
                b, doc_b = _concat(chunk[a_end:]), doc
            a, b = truncate_pair(a, b, max_tokens, rng)
            yield a, b, int(is_random), doc_b
            chunk, length = [], 0
            target = _target(rng, max_tokens, config.short_seq_prob)
        i += 1


def mlm_instances(doc, store, rng, config):
    """Yield single segments for MLM-only data: whole sentences packed up to the target
    length; a sentence longer than the window is cut into window-sized pieces."""
    max_tokens = config.max_length - 2
    target = _target(rng, max_tokens, config.short_seq_prob)
    chunk, length = [], 0
    for s in store.sentences(doc):
        if chunk and length + len(s) > target:
            yield _concat(chunk)
            chunk, length = [], 0
            target = _target(rng, max_tokens, config.short_seq_prob)
        if len(s) > max_tokens:
            for k in range(0, len(s), max_tokens):
                yield s[k:k + max_tokens]
            continue
        chunk.append(s)
        length += len(s)
    if chunk:
        yield _concat(chunk)
