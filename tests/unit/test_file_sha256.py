"""``file_sha256`` remembers a hash by (path, size, mtime): a file hashed twice is read
once, a changed file is read again, and a file written just now is read every time."""

import builtins
import hashlib
import os
import time

from taskbert import file_sha256


def count_opens(monkeypatch, path):
    """A list that grows by one each time ``path`` is opened."""
    opens, real = [], builtins.open

    def counting(file, *args, **kwargs):
        if str(file) == path:
            opens.append(file)
        return real(file, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", counting)
    return opens


def write(path, text, age_s):
    """Write ``text`` to ``path`` and date it ``age_s`` seconds back."""
    path.write_text(text, encoding="utf-8")
    stamp = time.time_ns() - age_s * 1_000_000_000
    os.utime(path, ns=(stamp, stamp))


def test_an_unchanged_file_is_read_once_and_a_changed_one_again(tmp_path, monkeypatch):
    path = tmp_path / "corpus.txt"
    write(path, "first", age_s=60)
    opens = count_opens(monkeypatch, str(path))
    assert file_sha256(str(path)) == hashlib.sha256(b"first").hexdigest()
    assert file_sha256(str(path)) == hashlib.sha256(b"first").hexdigest()
    assert len(opens) == 1
    write(path, "again", age_s=30)   # the same size: only the mtime tells
    assert file_sha256(str(path)) == hashlib.sha256(b"again").hexdigest()
    assert len(opens) == 2


def test_a_file_written_just_now_is_read_every_time(tmp_path, monkeypatch):
    path = tmp_path / "fresh.txt"
    path.write_text("fresh", encoding="utf-8")
    opens = count_opens(monkeypatch, str(path))
    assert file_sha256(str(path)) == file_sha256(str(path)) == hashlib.sha256(b"fresh").hexdigest()
    assert len(opens) == 2
