"""The bytes of a CSV file as records with their physical line numbers, read as data: a regular file
no larger than MAX_BYTES, UTF-8 (a byte-order mark skipped), rows no longer than MAX_ROW_CHARS, every
problem a ConfigError naming the line (and the byte, for bytes that are not UTF-8)."""

from __future__ import annotations

import codecs
import csv
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from nnexp.errors import ConfigError

MAX_BYTES = 2 * 1024**3  # the file's size
MAX_ROW_CHARS = 4 * 1024**2  # one row of the file, quoted line breaks included


def _open(path: Path) -> TextIO:
    """The file for reading as UTF-8 text, or a ConfigError saying why it cannot be (checked before opening:
    a pipe or a device would block or never end)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError("data.path", str(path), "no such file (give a path to a CSV file with a header "
                          "row)") from None
    except OSError as e:
        raise ConfigError("data.path", str(path), f"cannot be read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError("data.path", str(path), "is a directory, not a file (give a path to a CSV file with a header "
                          "row)")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError("data.path", str(path), "is not a regular file (a pipe, device or socket); give a path to "
                          "a CSV file")
    if st.st_size > MAX_BYTES:
        raise ConfigError("data.path", str(path), f"the file is {st.st_size:,} bytes; nnexp reads CSV files of at "
                          f"most {MAX_BYTES:,} bytes (sample or split the file)")
    try:
        return open(path, encoding="utf-8-sig", newline="")  # closed by the caller's `with`
    except OSError as e:
        raise ConfigError("data.path", str(path), f"cannot be read ({e.strerror or e})") from None


class _TooLong(Exception):
    """One row of the file is longer than MAX_ROW_CHARS, or the file grew beyond MAX_BYTES while read."""


class _Lines:
    """The physical lines of a text file for csv.reader, each read with a bound (a file of one endless line
    is never read whole); `row_chars` counts the characters of the row being read."""

    def __init__(self, f: TextIO) -> None:
        self.f, self.row_chars, self.chars = f, 0, 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.f.readline(MAX_ROW_CHARS + 1)
        if not line:
            raise StopIteration
        self.row_chars += len(line)
        self.chars += len(line)
        if self.row_chars > MAX_ROW_CHARS or self.chars > MAX_BYTES:
            raise _TooLong
        return line


def _records(path: Path, f: TextIO) -> Iterator[tuple[int, list[str]]]:
    """(physical line where the row starts, its cells) for every row with a non-blank cell. A row may span
    lines (a quoted line break); blank lines are skipped but counted."""
    lines = _Lines(f)
    reader = csv.reader(lines, strict=True)
    end = 0
    while True:
        start = end + 1
        try:
            row = next(reader, None)
        except csv.Error as e:
            if "field limit" in str(e):
                why = f": a cell is longer than {csv.field_size_limit():,} characters (is a quote left open?)"
            elif "unexpected end of data" in str(e):
                why = ": a quoted cell opened on this line is never closed"
            else:
                why = f" is not valid CSV ({e})"
            raise ConfigError("data.path", str(path), f"line {start}{why}") from None
        except _TooLong:
            why = (f"the file grew beyond {MAX_BYTES:,} bytes while it was read" if lines.chars > MAX_BYTES else
                   f"a row of the file is longer than {MAX_ROW_CHARS:,} characters (is a quote left open?)")
            raise ConfigError("data.path", str(path), f"line {start}: {why}") from None
        except UnicodeDecodeError:
            raise _not_utf8(path) from None
        except OSError as e:
            raise ConfigError("data.path", str(path), f"cannot be read ({e.strerror or e})") from None
        if row is None:
            return
        end = reader.line_num
        lines.row_chars = 0
        if "".join(row).strip():
            yield start, row


def _not_utf8(path: Path) -> ConfigError:
    """The error for a file that is not UTF-8, naming the physical line and byte offset of the first bad byte."""
    try:
        bad = _first_bad_byte(path)
        with open(path, "rb") as f:
            utf16 = f.read(2) in (b"\xff\xfe", b"\xfe\xff")
    except OSError:
        bad, utf16 = None, False
    where = f"line {bad[0]} (byte {bad[1]} of the file, 0x{bad[2]:02x})" if bad else "the file"
    hint = "it starts with a UTF-16 byte-order mark (Excel's 'Unicode Text'); " if utf16 else ""
    return ConfigError("data.path", str(path), f"{where} is not UTF-8; {hint}save the file as UTF-8 (in Excel: 'CSV "
                       "UTF-8 (Comma delimited)')")


def _first_bad_byte(path: Path) -> tuple[int, int, int] | None:
    """(physical line, byte offset, byte) of the first byte that is not UTF-8, reading blocks (no line of
    the file is held whole). A UTF-8 character never contains the bytes of '\\r' or '\\n', so line ends are
    counted on the bytes: '\\r\\n', '\\r' and '\\n' each end a line."""

    def line_ends(chunk: bytes, after_cr: bool) -> int:
        n = chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n")
        return n - 1 if after_cr and chunk.startswith(b"\n") else n

    decoder = codecs.getincrementaldecoder("utf-8")()
    line, offset, after_cr = 1, 0, False
    with open(path, "rb") as f:
        while True:
            block = f.read(1 << 16)
            pending = len(decoder.getstate()[0])  # bytes of a character begun in the previous block
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as e:
                at = offset - pending + e.start
                return line + line_ends(block[:max(0, at - offset)], after_cr), at, e.object[e.start]
            if not block:
                return None
            line += line_ends(block, after_cr)
            after_cr = block.endswith(b"\r")
            offset += len(block)
