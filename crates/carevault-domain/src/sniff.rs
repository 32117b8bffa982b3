//! The content type of an uploaded document, decided by its first bytes and never by its name
//! or by what the client declares. Only the types in [`ALLOWED`] are accepted; anything that a
//! browser could run (HTML, SVG, XML) is refused even though it is text.

use crate::InputError;

/// The document types carevault accepts.
pub const ALLOWED: &[&str] = &["application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp", "image/tiff", "text/plain"];

const PATH: &str = "contentType";
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why a head of content is not one of the [`ALLOWED`] types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Empty,
    ActiveContent,
    Unsupported,
}

/// The type of the content that starts with `head` (the first bytes of the document; a few
/// KiB are plenty), or `None` when it is not one of the [`ALLOWED`] types.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    classify(head).ok()
}

fn classify(head: &[u8]) -> Result<&'static str, Refusal> {
    if head.is_empty() {
        return Err(Refusal::Empty);
    }
    // Binary signatures first: a PDF starts with printable ASCII.
    if head.starts_with(b"%PDF-") {
        return Ok("application/pdf");
    }
    if head.starts_with(b"\x89PNG\r\n\x1A\n") {
        return Ok("image/png");
    }
    if head.starts_with(b"\xFF\xD8\xFF") {
        return Ok("image/jpeg");
    }
    if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        return Ok("image/gif");
    }
    if head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WEBP") {
        return Ok("image/webp");
    }
    if head.starts_with(b"II*\0") || head.starts_with(b"MM\0*") {
        return Ok("image/tiff");
    }
    let text = head.strip_prefix(UTF8_BOM).unwrap_or(head);
    if !is_plain_text(text) {
        return Err(Refusal::Unsupported);
    }
    if is_active_content(text) {
        return Err(Refusal::ActiveContent);
    }
    Ok("text/plain")
}

/// Valid UTF-8, except that the last character may be cut (the head is a prefix of the
/// document), with no NUL and no control character other than tab, line feed, carriage return
/// and form feed.
fn is_plain_text(bytes: &[u8]) -> bool {
    let valid = match std::str::from_utf8(bytes) {
        Ok(s) => s,
        // `error_len() == None`: the input ends inside a character that is valid so far.
        Err(e) if e.error_len().is_none() => match bytes.get(..e.valid_up_to()).map(std::str::from_utf8) {
            Some(Ok(s)) => s,
            _ => return false,
        },
        Err(_) => return false,
    };
    valid.chars().all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\x0C'))
}

/// Markup a browser would render or run: the required prefixes, then those of the WHATWG MIME
/// sniffing algorithm's HTML patterns (which must be followed by a tag-terminating byte).
fn is_active_content(text: &[u8]) -> bool {
    const ALWAYS: &[&[u8]] = &[b"<!doctype html", b"<html", b"<script", b"<svg", b"<?xml"];
    const TAGS: &[&[u8]] =
        &[b"<head", b"<iframe", b"<h1", b"<div", b"<font", b"<table", b"<a", b"<style", b"<title", b"<b", b"<body", b"<br", b"<p", b"<!--"];
    let start = text.iter().position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0C')).unwrap_or(text.len());
    let rest = text.get(start..).unwrap_or_default();
    let starts_with = |p: &[u8]| rest.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    ALWAYS.iter().any(|p| starts_with(p))
        || TAGS.iter().any(|p| starts_with(p) && matches!(rest.get(p.len()), Some(b' ' | b'>' | b'/' | b'\t' | b'\n' | b'\r' | b'\x0C')))
}

/// `type/subtype` of a declared media type: lowercase, without parameters, with the common
/// alias `image/jpg` for `image/jpeg`.
fn normalize_declared(declared: &str) -> String {
    let essence = declared.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if essence == "image/jpg" {
        "image/jpeg".to_string()
    } else {
        essence
    }
}

/// The type of the content starting with `head`, checked against the type the client declared.
/// No declaration (or `application/octet-stream`) takes the sniffed type; a declaration that
/// disagrees with the content is refused, as is content of a type not in [`ALLOWED`].
pub fn check_declared(declared: Option<&str>, head: &[u8]) -> Result<&'static str, InputError> {
    let sniffed = classify(head).map_err(|r| match r {
        Refusal::Empty => InputError::value(PATH, "the document is empty"),
        Refusal::ActiveContent => InputError::not_supported(
            Some(PATH),
            "the content is HTML, SVG or XML (active content), which is not accepted; supported types are PDF, PNG, JPEG, GIF, WebP, TIFF and plain text",
        ),
        Refusal::Unsupported => InputError::not_supported(
            Some(PATH),
            "the content is not of a supported type; supported types are PDF, PNG, JPEG, GIF, WebP, TIFF and plain text",
        ),
    })?;
    let declared = match declared.map(normalize_declared) {
        None => return Ok(sniffed),
        Some(d) if d.is_empty() || d == "application/octet-stream" => return Ok(sniffed),
        Some(d) => d,
    };
    // The declared type is only echoed once it is known to be one of ours (never free text).
    let Some(&declared) = ALLOWED.iter().find(|&&a| a == declared) else {
        return Err(InputError::not_supported(
            Some(PATH),
            format!("the declared content type is not supported; the content is {sniffed}, declare that or application/octet-stream"),
        ));
    };
    if declared != sniffed {
        return Err(InputError::value(PATH, format!("declared {declared} but the content is {sniffed}")));
    }
    Ok(sniffed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IssueCode;

    const PDF: &[u8] = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n1 0 obj";
    const PNG: &[u8] = b"\x89PNG\r\n\x1A\n\0\0\0\rIHDR";
    const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\0\x10JFIF\0";
    const GIF87: &[u8] = b"GIF87a\x01\0\x01\0";
    const GIF89: &[u8] = b"GIF89a\x01\0\x01\0";
    const WEBP: &[u8] = b"RIFF\x24\0\0\0WEBPVP8 ";
    const TIFF_LE: &[u8] = b"II*\0\x08\0\0\0";
    const TIFF_BE: &[u8] = b"MM\0*\0\0\0\x08";
    const ELF: &[u8] = b"\x7FELF\x02\x01\x01\0\0\0\0\0";
    const ZIP: &[u8] = b"PK\x03\x04\x14\0\0\0";
    const MZ: &[u8] = b"MZ\x90\0\x03\0\0\0\x04\0";

    #[test]
    fn recognizes_each_allowed_type() {
        let cases: &[(&[u8], &str)] = &[
            (PDF, "application/pdf"),
            (PNG, "image/png"),
            (JPEG, "image/jpeg"),
            (GIF87, "image/gif"),
            (GIF89, "image/gif"),
            (WEBP, "image/webp"),
            (TIFF_LE, "image/tiff"),
            (TIFF_BE, "image/tiff"),
            (b"Blood pressure 120/80\r\n\tnext line\x0C", "text/plain"),
            ("Müller, Zoë — 患者\n".as_bytes(), "text/plain"),
            (b"\xEF\xBB\xBFwith a BOM", "text/plain"),
            (b"\n", "text/plain"),
            (b"a < b and <b is not a tag", "text/plain"),
            (b"<br-not-a-tag", "text/plain"),
        ];
        for (head, ty) in cases {
            assert_eq!(sniff(head), Some(*ty), "{head:?}");
            assert_eq!(check_declared(None, head), Ok(*ty));
            assert_eq!(check_declared(Some(ty), head), Ok(*ty));
            assert!(ALLOWED.contains(ty));
        }
    }

    #[test]
    fn signatures_must_be_complete() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1A"), None);
        assert_eq!(sniff(b"\xFF\xD8"), None);
        assert_eq!(sniff(b"RIFF\x24\0\0\0WAVE"), None);
        assert_eq!(sniff(b"RIFF\x24\0\0\0WEB"), None);
        assert_eq!(sniff(b"GIF88a"), Some("text/plain"));
        assert_eq!(sniff(b"%PDF"), Some("text/plain"));
    }

    #[test]
    fn text_may_end_inside_a_character() {
        let s = "résumé 患".as_bytes();
        for cut in [s.len() - 1, s.len() - 2] {
            assert_eq!(sniff(&s[..cut]), Some("text/plain"), "cut {cut}");
        }
        // But not contain a broken one before the end.
        let mut broken = s[..s.len() - 1].to_vec();
        broken.extend_from_slice(b"x");
        assert_eq!(sniff(&broken), None);
        assert_eq!(sniff(b"caf\xE9 latin-1"), None);
        assert_eq!(sniff(b"\xC0\xAF overlong"), None);
    }

    #[test]
    fn binary_and_control_characters_are_not_text() {
        for head in [&b"nul\0inside"[..], b"bell\x07", b"esc\x1B[31m", b"del\x7F", "c1 \u{85}".as_bytes(), b"\xFF\xFEu\0t\0f\08\0"] {
            assert_eq!(sniff(head), None, "{head:?}");
        }
    }

    #[test]
    fn active_content_is_not_text() {
        for head in [
            &b"<!DOCTYPE html><html>"[..],
            b"<html><body>",
            b"  \r\n\t<HTML lang=en>",
            b"\xEF\xBB\xBF<script>alert(1)</script>",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"x()\">",
            b"<?xml version=\"1.0\"?><svg/>",
            b"<ScRiPt src=x>",
            b"<iframe src=x>",
            b"<body onload=x>",
            b"<a href=x>",
            b"<p>",
            b"<!-- comment -->",
        ] {
            assert_eq!(sniff(head), None, "{head:?}");
            let e = check_declared(Some("text/plain"), head).unwrap_err();
            assert_eq!((e.code, e.path.as_deref()), (IssueCode::NotSupported, Some("contentType")));
            assert!(e.message.contains("active content"), "{}", e.message);
        }
    }

    #[test]
    fn other_formats_are_refused() {
        for head in [ELF, ZIP, MZ, b"\x1F\x8B\x08\0" /* gzip */, b"\xCA\xFE\xBA\xBE"] {
            assert_eq!(sniff(head), None, "{head:?}");
            for declared in [None, Some("application/octet-stream"), Some("application/pdf")] {
                let e = check_declared(declared, head).unwrap_err();
                assert_eq!((e.code, e.path.as_deref()), (IssueCode::NotSupported, Some("contentType")));
                assert!(e.message.starts_with("the content is not of a supported type"), "{}", e.message);
            }
        }
    }

    #[test]
    fn empty_content_is_refused() {
        assert_eq!(sniff(b""), None);
        let e = check_declared(Some("text/plain"), b"").unwrap_err();
        assert_eq!(e, InputError::value("contentType", "the document is empty"));
        assert!(check_declared(None, b"").is_err());
    }

    #[test]
    fn declared_type_is_normalized() {
        assert_eq!(check_declared(Some("IMAGE/JPG"), JPEG), Ok("image/jpeg"));
        assert_eq!(check_declared(Some("image/jpeg; foo=bar"), JPEG), Ok("image/jpeg"));
        assert_eq!(check_declared(Some(" Text/Plain ; charset=UTF-8"), b"hello"), Ok("text/plain"));
        assert_eq!(check_declared(Some("application/octet-stream"), PDF), Ok("application/pdf"));
        assert_eq!(check_declared(Some("Application/Octet-Stream; name=x"), PNG), Ok("image/png"));
        assert_eq!(check_declared(Some(""), GIF89), Ok("image/gif"));
    }

    #[test]
    fn a_declaration_that_disagrees_with_the_content_is_refused() {
        let e = check_declared(Some("application/pdf"), PNG).unwrap_err();
        assert_eq!(e, InputError::value("contentType", "declared application/pdf but the content is image/png"));
        let e = check_declared(Some("image/png"), PDF).unwrap_err();
        assert_eq!(e.message, "declared image/png but the content is application/pdf");
        let e = check_declared(Some("image/jpg"), GIF87).unwrap_err();
        assert_eq!(e.message, "declared image/jpeg but the content is image/gif");
        let e = check_declared(Some("text/plain"), TIFF_LE).unwrap_err();
        assert_eq!(e.message, "declared text/plain but the content is image/tiff");
    }

    #[test]
    fn html_declared_as_text_or_as_html_is_refused() {
        let html = b"<!doctype html><title>x</title>";
        assert!(check_declared(Some("text/plain"), html).is_err());
        assert!(check_declared(Some("text/html"), html).is_err());
        // Text content declared as HTML: the declared type itself is not accepted, and not echoed.
        let e = check_declared(Some("text/html; charset=utf-8"), b"plain words").unwrap_err();
        assert_eq!((e.code, e.path.as_deref()), (IssueCode::NotSupported, Some("contentType")));
        assert_eq!(
            e.message,
            "the declared content type is not supported; the content is text/plain, declare that or application/octet-stream"
        );
        let e = check_declared(Some("image/svg+xml"), PNG).unwrap_err();
        assert!(!e.message.contains("svg"));
    }
}
