"""Every relative link in README.md and docs/**/*.md points to a file that exists."""

import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")   # [text](target) and ![alt](target)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)                  # links in code blocks are code
INLINE_CODE = re.compile(r"`[^`\n]*`")


def markdown_files():
    files = [os.path.join(ROOT, "README.md")]
    files += sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))
    return files


def relative_links(path):
    text = open(path, encoding="utf-8").read()
    text = INLINE_CODE.sub("", FENCE.sub("", text))
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue   # http:, https:, mailto: ... and anchors within the page
        yield target.split("#", 1)[0]


def test_docs_exist():
    names = {os.path.relpath(p, ROOT) for p in markdown_files()}
    assert "README.md" in names and len(names) > 5, names


def test_every_relative_link_points_to_a_file():
    broken = []
    for path in markdown_files():
        for target in relative_links(path):
            if not os.path.exists(os.path.join(os.path.dirname(path), target)):
                broken.append(f"{os.path.relpath(path, ROOT)}: {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)
