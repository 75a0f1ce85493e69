"""Wikipedia markup to plain text and sentences, for ``prepare_data.py wiki``."""

import html
import re


# Wiki markup, removed in this order. Templates and tables nest, so the innermost one is
# removed repeatedly until none is left.
WIKI_DROP = [re.compile(p, re.S | re.I) for p in (
    r"<!--.*?-->",
    r"<ref[^>]*/>", r"<ref[^>]*>.*?</ref>",
    r"<(math|gallery|timeline|score|syntaxhighlight|source|imagemap)\b[^>]*>.*?</\1>",
)]
TEMPLATE_RE = re.compile(r"\{\{(?:(?!\{\{)[^}]|\}(?!\}))*\}\}", re.S)
TABLE_RE = re.compile(r"\{\|(?:(?!\{\|).)*?\|\}", re.S)
LINK_RE = re.compile(r"\[\[((?:(?!\[\[|\]\]).)*)\]\]", re.S)
DROP_LINK = re.compile(r"^\s*:?\s*(file|image|media|category|wikipedia|wp|[a-z]{2,3}(-[a-z]+)?):",
                       re.I)
HTML_TAG_RE = re.compile(r"</?[A-Za-z][^>]*>")
EXT_LINK_RE = re.compile(r"\[(?:https?:)?//[^\s\]]+\s*([^\]]*)\]")


def _inner_link(match):
    """[[target|text]] -> text; file, category and interlanguage links -> ''."""
    body = match.group(1)
    if DROP_LINK.match(body):
        return ""
    return body.rsplit("|", 1)[-1]


def _sub_all(pattern, repl, text):
    """Apply ``pattern.sub`` until nothing changes (innermost nested markup goes first)."""
    n = 1
    while n:
        text, n = pattern.subn(repl, text)
    return text


def clean_wiki(text):
    """Strip MediaWiki markup from an article; return its paragraphs as a list of lines."""
    for pattern in WIKI_DROP:
        text = pattern.sub("", text)
    text = _sub_all(TEMPLATE_RE, " ", text)      # a space, so {{snd}} etc. split words
    text = _sub_all(TABLE_RE, " ", text)
    text = _sub_all(LINK_RE, _inner_link, text)
    text = EXT_LINK_RE.sub(r"\1", text)
    text = re.sub(r"https?://\S+", "", text)     # bare URLs
    text = HTML_TAG_RE.sub("", text)              # remaining html tags (keep their text)
    text = html.unescape(text)
    text = re.sub(r"'{2,}", "", text)             # '''bold''' and ''italic''
    text = re.sub(r"__[A-Z]+__", "", text)        # __NOTOC__ and friends
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if re.match(r"^=+.*=+$", line) or line[:1] in ("|", "!", "{", "}"):
            continue                              # headings and table/template leftovers
        line = re.sub(r"^[*#:;]+\s*", "", line)   # list and indent markers
        line = re.sub(r"\(\s*(?:[,;]\s*)*\)", "", line)  # parentheses emptied by the above
        line = re.sub(r"\(\s*(?:[,;]\s*)+", "(", line)
        line = re.sub(r"\s+([,.;:])", r"\1", " ".join(line.split()))
        if sum(c.isalpha() for c in line) >= 3:
            lines.append(line)
    return lines


SENT_RE = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"']))\s+(?=[\"'(]?[A-Z0-9])")
ABBREV = re.compile(r"\b(Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|Gen|Col|Lt|Sgt|Capt|Rev|No|Co|Inc|Ltd|"
                    r"Corp|Mt|vs|[A-Z])\.$")


def split_sentences(text):
    """Split a paragraph into sentences with a regex, not breaking after Mr. / Dr. / U.S. etc."""
    out = []
    for piece in SENT_RE.split(text.strip()):
        if out and ABBREV.search(out[-1]):
            out[-1] += " " + piece
        elif piece:
            out.append(piece)
    return out
