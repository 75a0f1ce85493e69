"""Overlapping windows of whole words over sentences longer than an encoder's input.

A word-level task (tagging, frozen word features) must see every word once, even when
a sentence has more subtokens than ``max_length``. :func:`word_windows` cuts a sentence
into windows of whole words; consecutive windows share context, and every word is *owned*
by exactly one window: the one where it has the most context on both sides. Use the
owned words' outputs and ignore the rest, and no word is dropped or counted twice.

Two knobs, both in subtokens, so they cannot be confused:

* ``budget``: the most subtokens a window holds (``max_length`` minus the special tokens);
* ``overlap``: the most subtokens two consecutive windows share. The next window starts
  ``overlap`` subtokens (rounded to whole words) before the previous one ends, so the
  step between window starts is about ``budget - overlap``.

Pure Python, no tokenizer: callers pass the number of subtokens of each word.
"""

from dataclasses import dataclass
from itertools import accumulate


@dataclass(frozen=True)
class WordWindow:
    """One window: words ``start`` .. ``end - 1``; ``owned`` are the (sorted) word
    indices whose output must be taken from this window."""

    start: int
    end: int
    owned: tuple


def word_windows(word_lengths, budget, overlap):
    """Cut words into windows of at most ``budget`` subtokens sharing up to ``overlap``.

    ``word_lengths`` is the number of subtokens of each word (0 is allowed: such a word
    rides along in whatever window holds its neighbours). A word longer than ``budget``
    gets a window of its own and counts as ``budget`` long: the caller keeps its first
    ``budget`` subtokens. Returns a list of :class:`WordWindow` covering every word;
    a sentence that fits is one window owning every word; no words gives no windows.

    Ownership: each word goes to the window that maximises ``min(left, right)``, the
    subtokens of context before and after it inside the window; ties go to the window
    where ``left + right`` is larger, then to the earlier window.
    """
    if budget < 1:
        raise ValueError(f"budget must be at least 1 subtoken, got {budget}")
    if not 0 <= overlap < budget:
        raise ValueError(f"overlap must be from 0 to budget - 1 ({budget - 1}), got {overlap}")
    lengths = [min(max(0, int(n)), budget) for n in word_lengths]
    n = len(lengths)
    if n == 0:
        return []
    before = [0, *accumulate(lengths)]  # before[i] = subtokens of words 0 .. i-1

    spans = []
    start = 0
    while True:
        end = start + 1  # at least one word, even one that fills the whole budget
        while end < n and before[end + 1] - before[start] <= budget:
            end += 1
        spans.append((start, end))
        if end >= n:
            break
        # the earliest next start whose words before `end` fit in `overlap` and leave
        # room for word `end`, so every window reaches further than the one before
        shared = min(overlap, budget - lengths[end])
        nxt = start + 1
        while before[end] - before[nxt] > shared:
            nxt += 1
        start = nxt

    owner = [None] * n
    best = [None] * n
    for k, (s, e) in enumerate(spans):
        for i in range(s, e):
            left = before[i] - before[s]
            right = before[e] - before[i + 1]
            score = (min(left, right), left + right)
            if best[i] is None or score > best[i]:  # strict: ties keep the earlier window
                best[i], owner[i] = score, k
    owned = [[] for _ in spans]
    for i, k in enumerate(owner):
        owned[k].append(i)
    return [WordWindow(s, e, tuple(o)) for (s, e), o in zip(spans, owned)]
