//! The PDF: a deterministic A4 rendering of a signed consent, with the canonical document
//! embedded.

use pdf_writer::types::{LineCapStyle, LineJoinStyle};
use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use sha2::{Digest, Sha256};

use super::document::to_hex;
use super::font::{win_ansi, wrap, Font};
use super::{document_sha256, DrawnSignature, SignedConsent};

/// The name of the embedded canonical document.
pub const EMBEDDED_DOCUMENT_NAME: &str = "consent-document.txt";

// A4 in points.
const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN_X: f32 = 60.0;
const TOP: f32 = PAGE_H - 60.0;
const BOTTOM: f32 = 60.0;
pub(super) const TEXT_W: f32 = PAGE_W - 2.0 * MARGIN_X;

pub(super) const BODY_SIZE: f32 = 10.5;
const BODY_LEADING: f32 = 14.5;
const TITLE_SIZE: f32 = 16.0;
const SMALL_SIZE: f32 = 8.5;
const SMALL_LEADING: f32 = 11.5;

const SIG_BOX_W: f32 = 260.0;
const SIG_BOX_H: f32 = 100.0;
const SIG_PAD: f32 = 8.0;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Color {
    Black,
    Gray,
    Red,
}

enum Op {
    Text {
        font: Font,
        size: f32,
        color: Color,
        x: f32,
        y: f32,
        bytes: Vec<u8>,
    },
    /// The signature box with its top-left corner at (x, y).
    Signature {
        x: f32,
        y: f32,
    },
}

/// Lays text out top to bottom over as many pages as it needs.
struct Layout {
    pages: Vec<Vec<Op>>,
    y: f32,
    substituted: bool,
}

impl Layout {
    fn new() -> Self {
        Layout { pages: vec![Vec::new()], y: TOP, substituted: false }
    }

    fn page(&mut self) -> &mut Vec<Op> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = TOP;
    }

    /// Starts a new page unless `height` points still fit on this one.
    fn ensure(&mut self, height: f32) {
        if self.y - height < BOTTOM && self.y < TOP {
            self.new_page();
        }
    }

    fn space(&mut self, height: f32) {
        self.y -= height;
    }

    /// A paragraph (one line of the document), word-wrapped to the text width.
    fn paragraph(&mut self, font: Font, size: f32, leading: f32, color: Color, text: &str) {
        let (bytes, substituted) = win_ansi(text);
        self.substituted |= substituted;
        for line in wrap(&bytes, font, size, TEXT_W) {
            self.ensure(leading);
            self.y -= leading;
            let y = self.y + (leading - size) / 2.0 + size * 0.2;
            self.page().push(Op::Text { font, size, color, x: MARGIN_X, y, bytes: line });
        }
    }
}

/// Renders the consent as a PDF (A4): the title, the document word-wrapped in Helvetica, the
/// drawn signature as vector strokes in a box, the signing details and hashes, `REVOKED` when
/// revoked, and the canonical document embedded as `consent-document.txt`. Deterministic: the
/// same record gives the same bytes.
pub fn render_pdf(c: &SignedConsent) -> Vec<u8> {
    let doc_hash = document_sha256(&c.document);
    let doc_hex = to_hex(&doc_hash);
    let sig_hex = c.signature.sha256_hex();
    let revoked = c.is_revoked().then(|| match c.revoked_at.as_deref() {
        Some(at) => format!("REVOKED {at}"),
        None => "REVOKED".to_string(),
    });

    let mut l = Layout::new();
    // Title and, when revoked, the banner under it.
    l.paragraph(Font::Bold, TITLE_SIZE, TITLE_SIZE * 1.3, Color::Black, &c.title);
    if let Some(r) = &revoked {
        l.paragraph(Font::Bold, 12.0, 16.0, Color::Red, r);
    }
    l.space(BODY_LEADING * 0.6);

    // The document; its first line is the title already shown above.
    let mut lines: Vec<&str> = c.document.split('\n').collect();
    if lines.first() == Some(&c.title.as_str()) {
        let skip = if lines.get(1) == Some(&"") { 2 } else { 1 };
        lines.drain(..skip);
    }
    // Its last paragraph (the statement of intent) is kept on the page of the signature.
    let last = lines.iter().rposition(|line| !line.trim().is_empty()).map(|i| lines.remove(i));
    for line in lines {
        if line.trim().is_empty() {
            l.space(BODY_LEADING * 0.6);
        } else {
            l.paragraph(Font::Regular, BODY_SIZE, BODY_LEADING, Color::Black, line);
        }
    }

    // The statement of intent and the signature block stay together on one page.
    let details = signing_details(c, &doc_hex, &sig_hex);
    let intent_h = last.map_or(0.0, |line| wrap(&win_ansi(line).0, Font::Regular, BODY_SIZE, TEXT_W).len() as f32 * BODY_LEADING);
    let block = BODY_LEADING
        + 16.0
        + 4.0
        + SIG_BOX_H
        + 4.0
        + 16.0
        + if revoked.is_some() { 16.0 } else { 0.0 }
        + 4.0
        + SMALL_LEADING * (details.len() as f32 + 1.5);
    l.ensure(intent_h + block);
    if let Some(line) = last {
        l.paragraph(Font::Regular, BODY_SIZE, BODY_LEADING, Color::Black, line);
    }
    l.space(BODY_LEADING);
    l.paragraph(Font::Bold, 11.0, 16.0, Color::Black, "Signature");
    l.space(4.0);
    let top = l.y;
    l.page().push(Op::Signature { x: MARGIN_X, y: top });
    l.y -= SIG_BOX_H + 4.0;
    l.paragraph(Font::Bold, 11.0, 16.0, Color::Black, &c.signer_typed_name);
    if let Some(r) = &revoked {
        l.paragraph(Font::Bold, 12.0, 16.0, Color::Red, r);
    }
    l.space(4.0);
    for line in &details {
        l.paragraph(Font::Regular, SMALL_SIZE, SMALL_LEADING, Color::Black, line);
    }
    l.space(SMALL_LEADING * 0.5);
    l.paragraph(
        Font::Regular,
        SMALL_SIZE,
        SMALL_LEADING,
        Color::Gray,
        "The exact signed text is embedded in this PDF as consent-document.txt (UTF-8); its SHA-256 is the document hash above.",
    );
    if l.substituted {
        l.paragraph(
            Font::Regular,
            SMALL_SIZE,
            SMALL_LEADING,
            Color::Gray,
            "Characters that the PDF font cannot show are printed as '?'; the embedded document has them exactly.",
        );
    }

    write_pdf(c, l.pages, &doc_hash, &doc_hex, &sig_hex, revoked.as_deref())
}

fn signing_details(c: &SignedConsent, doc_hex: &str, sig_hex: &str) -> Vec<String> {
    let mut d = Vec::new();
    if let Some(r) = c.signer_relationship.as_deref().filter(|r| !r.trim().eq_ignore_ascii_case("self")) {
        d.push(format!("Signed as: {r}"));
    }
    d.push(format!("Signed at (UTC): {}", c.signed_at_utc));
    d.push(format!("Signed at (local time): {}", c.signed_at_local));
    d.push(format!("Device: {}", c.device));
    d.push(format!("IP address: {}", c.ip));
    d.push(format!("Consent ID: {}", c.id));
    d.push(format!("Template: {} version {}", c.kind.id(), c.template_version));
    d.push(format!("Template SHA-256: {}", c.template_sha256));
    d.push(format!("Document SHA-256: {doc_hex}"));
    d.push(format!("Signature SHA-256: {sig_hex}"));
    d
}

fn write_pdf(c: &SignedConsent, pages: Vec<Vec<Op>>, doc_hash: &[u8; 32], doc_hex: &str, sig_hex: &str, revoked: Option<&str>) -> Vec<u8> {
    let catalog_id = Ref::new(1);
    let tree_id = Ref::new(2);
    let info_id = Ref::new(3);
    let regular_id = Ref::new(4);
    let bold_id = Ref::new(5);
    let spec_id = Ref::new(6);
    let file_id = Ref::new(7);
    let first_page = 8;
    let page_count = i32::try_from(pages.len()).unwrap_or(i32::MAX);
    let page_ids: Vec<Ref> = (0..page_count).map(|i| Ref::new(first_page + 2 * i)).collect();

    let mut pdf = Pdf::new();
    pdf.set_version(1, 7);
    // The file identifier: from the document hash (first) and from the hashes and status of this
    // rendering (second), so it is fixed for a record and changes when the record is revoked.
    let mut second = Sha256::new();
    second.update(doc_hash);
    second.update(sig_hex.as_bytes());
    second.update(c.status.as_bytes());
    second.update(revoked.unwrap_or("").as_bytes());
    pdf.set_file_id((doc_hash[..16].to_vec(), second.finalize()[..16].to_vec()));

    {
        let mut catalog = pdf.catalog(catalog_id);
        catalog.pages(tree_id);
        catalog.lang(TextStr("en"));
        catalog.names().embedded_files().names().insert(Str(EMBEDDED_DOCUMENT_NAME.as_bytes()), spec_id);
        catalog.finish();
    }
    pdf.pages(tree_id).kids(page_ids.iter().copied()).count(page_count);

    {
        let template = format!("{} {}", c.kind.id(), c.template_version);
        let mut info = pdf.document_info(info_id);
        info.title(TextStr(&c.title));
        info.subject(TextStr(&format!("Document SHA-256: {doc_hex}")));
        info.producer(TextStr("carevault"));
        info.pair(Name(b"ConsentId"), TextStr(&c.id));
        info.pair(Name(b"ConsentTemplate"), TextStr(&template));
        info.pair(Name(b"DocumentSHA256"), TextStr(doc_hex));
        info.pair(Name(b"SignatureSHA256"), TextStr(sig_hex));
        info.pair(Name(b"ConsentStatus"), TextStr(&c.status));
        info.finish();
    }

    pdf.type1_font(regular_id).base_font(Name(b"Helvetica")).encoding_predefined(Name(b"WinAnsiEncoding"));
    pdf.type1_font(bold_id).base_font(Name(b"Helvetica-Bold")).encoding_predefined(Name(b"WinAnsiEncoding"));

    {
        let mut spec = pdf.file_spec(spec_id);
        spec.path(Str(EMBEDDED_DOCUMENT_NAME.as_bytes()));
        spec.unic_file(TextStr(EMBEDDED_DOCUMENT_NAME));
        spec.description(TextStr("The signed consent document (UTF-8 text); its SHA-256 is the document hash printed in this PDF."));
        spec.embedded_file_with_unicode(file_id);
        spec.finish();
    }
    {
        let bytes = c.document.as_bytes();
        let mut file = pdf.embedded_file(file_id, bytes);
        file.subtype(Name(b"text/plain"));
        file.params().size(i32::try_from(bytes.len()).unwrap_or(i32::MAX));
        file.finish();
    }

    let footer_prefix = format!("Consent {} - {}", c.id, c.title);
    for (i, ops) in pages.iter().enumerate() {
        let page_id = page_ids.get(i).copied().unwrap_or(Ref::new(first_page));
        let content_id = Ref::new(page_id.get() + 1);
        let mut content = Content::new();
        for op in ops {
            match op {
                Op::Text { font, size, color, x, y, bytes } => text(&mut content, *font, *size, *color, *x, *y, bytes),
                Op::Signature { x, y } => signature(&mut content, &c.signature, *x, *y),
            }
        }
        // Header on continuation pages, the revocation on every page, the footer.
        if let Some(r) = revoked {
            let (bytes, _) = win_ansi(r);
            let w = Font::Bold.width(&bytes, 10.0);
            text(&mut content, Font::Bold, 10.0, Color::Red, PAGE_W - MARGIN_X - w, PAGE_H - 36.0, &bytes);
        }
        let (footer, _) = win_ansi(&format!("{footer_prefix} - page {} of {}", i + 1, pages.len()));
        let footer = wrap(&footer, Font::Regular, 7.5, TEXT_W).into_iter().next().unwrap_or_default();
        text(&mut content, Font::Regular, 7.5, Color::Gray, MARGIN_X, 34.0, &footer);

        let data = content.finish();
        pdf.stream(content_id, &data);
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        page.parent(tree_id);
        page.contents(content_id);
        let mut resources = page.resources();
        resources.fonts().pair(Font::Regular.resource(), regular_id).pair(Font::Bold.resource(), bold_id);
        resources.finish();
        page.finish();
    }

    pdf.finish()
}

fn set_fill(content: &mut Content, color: Color) {
    match color {
        Color::Black => content.set_fill_gray(0.0),
        Color::Gray => content.set_fill_gray(0.35),
        Color::Red => content.set_fill_rgb(0.75, 0.0, 0.0),
    };
}

fn text(content: &mut Content, font: Font, size: f32, color: Color, x: f32, y: f32, bytes: &[u8]) {
    content.begin_text();
    set_fill(content, color);
    content.set_font(font.resource(), size);
    content.set_text_matrix([1.0, 0.0, 0.0, 1.0, x, y]);
    content.show(Str(bytes));
    content.end_text();
}

/// The signature box (top-left corner at x, y) with the strokes scaled to fit inside, centered,
/// aspect ratio kept, canvas y flipped to PDF's upward y.
fn signature(content: &mut Content, sig: &DrawnSignature, x: f32, y: f32) {
    content.save_state();
    content.set_stroke_gray(0.6);
    content.set_line_width(0.5);
    content.rect(x, y - SIG_BOX_H, SIG_BOX_W, SIG_BOX_H);
    content.stroke();
    // A line to sign on, as on paper.
    content.move_to(x + SIG_PAD, y - SIG_BOX_H + SIG_PAD + 4.0);
    content.line_to(x + SIG_BOX_W - SIG_PAD, y - SIG_BOX_H + SIG_PAD + 4.0);
    content.stroke();

    let mut points = sig.strokes.iter().flatten();
    if let Some(first) = points.next() {
        let (min_x, max_x, min_y, max_y) = points
            .fold((first[0], first[0], first[1], first[1]), |(a, b, c, d), [px, py]| (a.min(*px), b.max(*px), c.min(*py), d.max(*py)));
        let w = f32::from(max_x - min_x).max(1.0);
        let h = f32::from(max_y - min_y).max(1.0);
        let inner_w = SIG_BOX_W - 2.0 * SIG_PAD;
        let inner_h = SIG_BOX_H - 2.0 * SIG_PAD;
        let scale = (inner_w / w).min(inner_h / h);
        let left = x + SIG_PAD + (inner_w - w * scale) / 2.0;
        let top = y - SIG_PAD - (inner_h - h * scale) / 2.0;
        let map = |[px, py]: [u16; 2]| (left + f32::from(px - min_x) * scale, top - f32::from(py - min_y) * scale);

        content.set_stroke_gray(0.0);
        content.set_line_width(1.4);
        content.set_line_cap(LineCapStyle::RoundCap);
        content.set_line_join(LineJoinStyle::RoundJoin);
        for stroke in &sig.strokes {
            let Some(first) = stroke.first() else { continue };
            let (sx, sy) = map(*first);
            content.move_to(sx, sy);
            if stroke.len() == 1 {
                content.line_to(sx, sy);
            }
            for p in &stroke[1..] {
                let (px, py) = map(*p);
                content.line_to(px, py);
            }
            content.stroke();
        }
    }
    content.restore_state();
}
