"""Adapters from what real clusters already emit to the pipeline's batches.

Each adapter parses one real format (tested against captures in `../shared/samples/`), counts
what it could not parse instead of failing, and maps hosts and devices to topology names through
an inventory (`pipeline.topology.inventory`).

Every adapter says why it produced nothing: an input that is not its format at all raises
`FormatError` (what the input looks like and what is expected, one line); rows, samples or
devices it skipped are counted in a `Skips` with their reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class FormatError(ValueError):
    """The input as a whole is not what the adapter reads (empty, binary, another format).
    The message says what it looks like and what is expected, in one line."""


def plural(n: int, word: str) -> str:
    """'1 row', '12 rows', '2 batches', '3 Xid lines'."""
    if n == 1:
        return f"{n:,} {word}"
    return f"{n:,} {word + 'es' if word.endswith(('ch', 'sh', 's', 'x')) else word + 's'}"


@dataclass
class Skips:
    """What an adapter skipped in one input and why: reason -> [count, unit, first example, items],
    in the order the reasons first appeared. A reason with a `group` and an `item` (an
    `inventory.Why`: 'GPU PCI id X not in host h's gpus map') is counted with the others of its
    group and reported once, naming all their items."""

    reasons: dict[str, list] = field(default_factory=dict)

    def add(self, reason: str, unit: str = "row", n: int = 1, example: str | None = None) -> None:
        group, item = getattr(reason, "group", None), getattr(reason, "item", None)
        entry = self.reasons.setdefault(group or str(reason), [0, unit, example, {}])
        entry[0] += n
        if group:
            entry[3][item] = entry[3].get(item, 0) + n

    @property
    def total(self) -> int:
        return sum(entry[0] for entry in self.reasons.values())

    def __bool__(self) -> bool:
        return bool(self.reasons)

    def merge(self, other: Skips) -> None:
        for reason, (count, unit, example, items) in other.reasons.items():
            entry = self.reasons.setdefault(reason, [0, unit, example, {}])
            entry[0] += count
            for item, n in items.items():
                entry[3][item] = entry[3].get(item, 0) + n

    def describe(self, limit: int = 3) -> str:
        """'12 rows: GPU PCI id 83:00.0 not in host h's gpus map (which maps: 9b:00); 1 line: ...'."""
        parts = []
        for reason, (count, unit, example, items) in list(self.reasons.items())[:limit]:
            if items:
                names = list(items)
                reason = reason.format(
                    s="s" if len(names) > 1 else "",
                    items=", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else ""),
                )
            parts.append(f"{plural(count, unit)}: {reason}" + (f" (first: {example})" if example else ""))
        more = len(self.reasons) - limit
        return "; ".join(parts) + (f"; and {plural(more, 'other reason')}" if more > 0 else "")


# What a binary file is, by its first bytes.
_MAGIC = (
    (b"\x1f\x8b", "gzip-compressed data (decompress it first)"),
    (b"PAR1", "a Parquet file"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x7fELF", "an executable (ELF)"),
    (b"\x89PNG", "a PNG image"),
    (b"%PDF", "a PDF document"),
    (b"BZh", "bzip2-compressed data (decompress it first)"),
    (b"\xfd7zXZ", "xz-compressed data (decompress it first)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data (decompress it first)"),
    (b"CPMSG1\n", "a ClusterPulse message file"),
    (b"SQLite format 3", "an SQLite database"),
)


_CONTROL = bytes(c for c in range(32) if chr(c) not in "\t\n\r\f\v")


def binary_kind(data: bytes) -> str | None:
    """What binary data looks like ('a Parquet file', 'binary data'), or None for text."""
    for magic, what in _MAGIC:
        if data.startswith(magic):
            return what
    head = data[:8192]
    if b"\0" in head:
        return "binary data"
    if head.isascii():  # the common case, counted in C: control characters other than whitespace
        if len(data) > len(head):
            head = head[:-3]
        odd = len(head) - len(head.translate(None, _CONTROL))
        return "binary data" if head and odd > max(2, len(head) // 20) else None
    text = head.decode("utf-8", errors="replace")
    if len(data) > len(head):
        text = text[:-3]  # a character cut at the end of the head is not binary
    odd = sum(1 for c in text if c == "\ufffd" or (ord(c) < 32 and c not in "\t\n\r\f\v"))
    return "binary data" if text and odd > max(2, len(text) // 20) else None


def decode_text(data: bytes, empty: str = "empty file") -> str:
    """Text of an input, or FormatError: empty, whitespace only, or binary (saying what it is)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 (PowerShell `>` redirection)
        data = data.decode("utf-16", errors="replace").encode()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data:
        raise FormatError(empty)
    if not data.strip():
        raise FormatError(f"{empty} (only whitespace)")
    kind = binary_kind(data)
    if kind:
        raise FormatError(f"{kind}, not text")
    return data.decode("utf-8", errors="replace")


def read_text(path: str | Path) -> str:
    """A text input file, or FormatError (empty, binary) / OSError (unreadable, a directory)."""
    return decode_text(Path(path).read_bytes())


def first_line(text: str, width: int = 60) -> str:
    """The first non-blank line, shortened, for 'what it looks like' messages."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return repr(line if len(line) <= width else line[:width] + "...")
