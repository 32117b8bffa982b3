#!/usr/bin/env python3
"""Checks a signed-consent PDF of carevault with an independent reader (pypdf).

    python e2e/pdf_check.py consent.pdf [more.pdf ...]

For each PDF: pypdf opens it in strict mode; the text of its pages contains the title (from the
Info dictionary) and the lines "Document SHA-256: <hex>" and "Signature SHA-256: <hex>"; the
embedded file consent-document.txt is there, is UTF-8, and its SHA-256 is the printed document
hash (and the one in the Info dictionary). Exits non-zero with a message on the first failure.
"""

import hashlib
import re
import sys

from pypdf import PdfReader

EMBEDDED = "consent-document.txt"


def shown(text: str) -> str:
    """The text as the PDF shows it: characters outside WinAnsi (cp1252) are printed as '?'."""
    out = []
    for ch in text:
        try:
            ch.encode("cp1252")
            out.append(ch)
        except UnicodeEncodeError:
            out.append("?")
    return "".join(out)


def check(path: str) -> str:
    reader = PdfReader(path, strict=True)
    pages = len(reader.pages)
    if pages < 1:
        raise AssertionError("no pages")
    text = "\n".join(page.extract_text() or "" for page in reader.pages)

    info = reader.metadata or {}
    title = info.get("/Title")
    if not title:
        raise AssertionError("no /Title in the Info dictionary")
    if shown(str(title)) not in text:
        raise AssertionError(f"the page text does not contain the title {title!r}")

    doc_hashes = re.findall(r"Document SHA-256: ([0-9a-f]{64})", text)
    if len(doc_hashes) != 1:
        raise AssertionError(f"expected one 'Document SHA-256: <hex>' line in the page text, found {len(doc_hashes)}")
    printed = doc_hashes[0]
    if not re.search(r"Signature SHA-256: [0-9a-f]{64}", text):
        raise AssertionError("no 'Signature SHA-256: <hex>' line in the page text")
    if info.get("/DocumentSHA256") != printed:
        raise AssertionError("the Info dictionary's /DocumentSHA256 differs from the printed hash")
    if info.get("/Subject") != f"Document SHA-256: {printed}":
        raise AssertionError("the Info dictionary's /Subject does not carry the printed hash")

    attachments = reader.attachments
    if EMBEDDED not in attachments:
        raise AssertionError(f"no embedded file {EMBEDDED} (found {sorted(attachments)})")
    contents = attachments[EMBEDDED]
    if len(contents) != 1:
        raise AssertionError(f"{EMBEDDED} is embedded {len(contents)} times")
    data = contents[0]
    document = data.decode("utf-8")  # raises if not UTF-8
    actual = hashlib.sha256(data).hexdigest()
    if actual != printed:
        raise AssertionError(f"SHA-256 of {EMBEDDED} is {actual}, the PDF prints {printed}")
    if "\r" in document or document != document.rstrip():
        raise AssertionError(f"{EMBEDDED} is not canonical (CR or trailing white space)")
    return f"{path}: ok ({pages} page{'s' if pages != 1 else ''}, {len(data)}-byte document, SHA-256 {printed})"


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    for path in sys.argv[1:]:
        try:
            print(check(path))
        except Exception as e:  # noqa: BLE001 - every failure is reported the same way
            print(f"{path}: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
