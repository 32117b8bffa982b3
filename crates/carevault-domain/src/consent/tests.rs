use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

use super::document::to_hex;
use super::font::{win_ansi, wrap, Font};
use super::pdf::{BODY_SIZE, TEXT_W};
use super::*;
use crate::error::IssueCode;

fn fields() -> DocumentFields {
    DocumentFields {
        patient_name: "Ana María Núñez".to_string(),
        birth_date: "1984-03-09".to_string(),
        organization: "Riverside Family Clinic".to_string(),
        signer_typed_name: "Ana María Núñez".to_string(),
        ..DocumentFields::default()
    }
}

fn roi_fields() -> DocumentFields {
    DocumentFields {
        recipient: Some("Dr. Lee, Lakeside Cardiology".to_string()),
        purpose: Some("continuity of care".to_string()),
        scope: Some("cardiology notes and ECGs from 2023".to_string()),
        expires: Some("2026-12-31".to_string()),
        ..fields()
    }
}

fn drawing() -> DrawnSignature {
    DrawnSignature {
        width: 600,
        height: 200,
        strokes: vec![vec![[40, 150], [80, 60], [120, 140], [160, 70], [200, 130]], vec![[230, 100], [420, 95]], vec![[450, 80]]],
    }
}

fn ctx() -> SigningContext {
    SigningContext {
        id: "0b9f2c1e-6a43-4d1c-9a55-2f1f7f3c6d10".to_string(),
        signed_at_utc: "2025-05-01T14:03:22Z".to_string(),
        signed_at_local: "2025-05-01T10:03:22-04:00".to_string(),
        device:
            "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
                .to_string(),
        ip: "203.0.113.24".to_string(),
    }
}

fn consent(kind: ConsentKind, f: &DocumentFields) -> SignedConsent {
    sign(&builtin_template(kind), f, drawing(), ctx()).unwrap()
}

fn page_count(pdf: &[u8]) -> usize {
    let s = String::from_utf8_lossy(pdf);
    let start = s.find("/Type /Pages").unwrap();
    let count = &s[start..];
    let at = count.find("/Count ").unwrap() + 7;
    count[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// --- kinds and templates ---

#[test]
fn kinds_have_stable_ids_and_fhir_codes() {
    for k in ConsentKind::ALL {
        assert_eq!(ConsentKind::parse(k.id()).unwrap(), k);
        assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.id()));
        assert_eq!(k.category().system, "http://loinc.org");
        assert_eq!(k.scope().system, "http://terminology.hl7.org/CodeSystem/consentscope");
    }
    assert!(ConsentKind::parse("research").is_err());
    assert_eq!(ConsentKind::Treatment.category().code, "59284-0");
    assert_eq!(ConsentKind::Telehealth.category().code, "59284-0");
    assert_eq!(ConsentKind::PrivacyPractices.category().code, "57016-8");
    assert_eq!(ConsentKind::ReleaseOfInformation.category().code, "64292-6");
    assert_eq!(ConsentKind::Treatment.scope().code, "treatment");
    assert_eq!(ConsentKind::Telehealth.scope().code, "treatment");
    assert_eq!(ConsentKind::PrivacyPractices.scope().code, "patient-privacy");
    assert_eq!(ConsentKind::ReleaseOfInformation.scope().code, "patient-privacy");
}

#[test]
fn builtin_templates_are_valid_and_distinct() {
    let all = builtin_templates();
    assert_eq!(all.len(), 4);
    let mut hashes: Vec<String> = all.iter().map(Template::sha256).collect();
    for t in &all {
        t.check().unwrap();
        assert_eq!(t.version, 1);
        assert_eq!(t.sha256().len(), 64);
    }
    hashes.dedup();
    assert_eq!(hashes.len(), 4);
    let roi = builtin_template(ConsentKind::ReleaseOfInformation);
    let used = roi.placeholders().unwrap();
    for p in ["patient_name", "birth_date", "organization", "recipient", "purpose", "scope", "expires"] {
        assert!(used.iter().any(|u| u.name() == p), "{p}");
    }
}

#[test]
fn template_hash_names_kind_version_title_and_body() {
    let t = builtin_template(ConsentKind::Treatment);
    let h = t.sha256();
    assert_eq!(h, builtin_template(ConsentKind::Treatment).sha256());
    assert_ne!(h, Template { version: 2, ..t.clone() }.sha256());
    assert_ne!(h, Template { body: format!("{} ", t.body), ..t.clone() }.sha256());
    assert_ne!(h, Template { title: "Consent".to_string(), ..t.clone() }.sha256());
    assert_ne!(h, Template { kind: ConsentKind::Telehealth, ..t.clone() }.sha256());
    // The documented layout, so another implementation can recompute it.
    let expected = Sha256::digest(format!("treatment\n1\n{}\n{}\n{}", t.title.len(), t.title, t.body).as_bytes());
    assert_eq!(h, to_hex(&expected));
}

#[test]
fn template_check_rejects_bad_templates() {
    let t = builtin_template(ConsentKind::Treatment);
    let err = |t: Template| t.check().unwrap_err();
    assert_eq!(err(Template { version: 0, ..t.clone() }).path.as_deref(), Some("template.version"));
    assert_eq!(err(Template { title: " ".to_string(), ..t.clone() }).code, IssueCode::Required);
    assert_eq!(err(Template { title: "A\nB".to_string(), ..t.clone() }).path.as_deref(), Some("template.title"));
    let e = err(Template { body: format!("{} {{{{insurer}}}}", t.body), ..t.clone() });
    assert!(e.message.contains("unknown placeholder {{insurer}}"), "{e}");
    let e = err(Template { body: format!("{} {{{{patient_name", t.body), ..t.clone() });
    assert!(e.message.contains("not closed"), "{e}");
    let e = err(Template { body: format!("{} }}}}", t.body), ..t.clone() });
    assert!(e.message.contains("outside"), "{e}");
    let e = err(Template { body: format!("{} {{{{ patient_name }}}}", t.body), ..t.clone() });
    assert!(e.message.contains("{{name}}"), "{e}");
    let e = err(Template { body: t.body.replace("{{birth_date}}", "____"), ..t.clone() });
    assert!(e.message.contains("{{birth_date}}"), "{e}");
    let roi = builtin_template(ConsentKind::ReleaseOfInformation);
    let e = err(Template { body: roi.body.replace("{{expires}}", "never"), ..roi.clone() });
    assert!(e.message.contains("{{expires}}"), "{e}");
    assert!(err(Template { body: format!("{}\u{7}", t.body), ..t }).message.contains("control"));
}

// --- the document ---

#[test]
fn document_fills_placeholders_and_ends_with_the_intent_statement() {
    let doc = render_document(&builtin_template(ConsentKind::Treatment), &fields()).unwrap();
    assert!(
        doc.starts_with("Consent to Treatment\n\nPatient: Ana María Núñez\nDate of birth: 1984-03-09\nProvider: Riverside Family Clinic\n")
    );
    assert!(!doc.contains("{{") && !doc.contains("}}"));
    assert!(doc.ends_with(
        "By signing below I, Ana María Núñez, confirm that I have read this document and agree to it. \
         I intend my typed name and drawn signature to be my legal signature."
    ));
    assert!(!doc.contains("on behalf of"));
    let roi = render_document(&builtin_template(ConsentKind::ReleaseOfInformation), &roi_fields()).unwrap();
    assert!(roi.contains("Recipient: Dr. Lee, Lakeside Cardiology\nPurpose: continuity of care\n"));
    assert!(roi.contains("This authorization expires: 2026-12-31"));
}

#[test]
fn a_representative_says_so() {
    let f = DocumentFields { signer_typed_name: "Marta Núñez".to_string(), signer_relationship: Some("parent".to_string()), ..fields() };
    let doc = render_document(&builtin_template(ConsentKind::Treatment), &f).unwrap();
    assert!(doc.ends_with("legal signature. I am signing on behalf of Ana María Núñez as their parent and I am authorized to do so."));
    let own = DocumentFields { signer_relationship: Some(" Self ".to_string()), ..fields() };
    assert!(!render_document(&builtin_template(ConsentKind::Treatment), &own).unwrap().contains("on behalf"));
}

#[test]
fn values_are_not_expanded_again() {
    let f = DocumentFields { patient_name: "{{organization}}".to_string(), ..fields() };
    let doc = render_document(&builtin_template(ConsentKind::Treatment), &f).unwrap();
    assert!(doc.contains("Patient: {{organization}}\n"));
    let f = DocumentFields { signer_typed_name: "X {{relationship}}".to_string(), signer_relationship: Some("parent".into()), ..fields() };
    let doc = render_document(&builtin_template(ConsentKind::Treatment), &f).unwrap();
    assert!(doc.contains("I, X {{relationship}}, confirm"));
}

#[test]
fn missing_or_bad_fields_are_precise_errors() {
    let treatment = builtin_template(ConsentKind::Treatment);
    let roi = builtin_template(ConsentKind::ReleaseOfInformation);
    let e = render_document(&roi, &fields()).unwrap_err();
    assert_eq!((e.code, e.path.as_deref()), (IssueCode::Required, Some("fields.recipient")));
    let e = render_document(&roi, &DocumentFields { expires: None, ..roi_fields() }).unwrap_err();
    assert_eq!((e.code, e.path.as_deref()), (IssueCode::Required, Some("fields.expires")));
    let e = render_document(&roi, &DocumentFields { scope: Some("  ".into()), ..roi_fields() }).unwrap_err();
    assert_eq!((e.code, e.path.as_deref()), (IssueCode::Required, Some("fields.scope")));
    let e = render_document(&treatment, &DocumentFields { birth_date: String::new(), ..fields() }).unwrap_err();
    assert_eq!((e.code, e.path.as_deref()), (IssueCode::Required, Some("fields.birth_date")));
    let e = render_document(&treatment, &DocumentFields { signer_typed_name: String::new(), ..fields() }).unwrap_err();
    assert_eq!((e.code, e.path.as_deref()), (IssueCode::Required, Some("fields.signer_typed_name")));
    let e = render_document(&treatment, &DocumentFields { patient_name: "Ana\n\nI also agree to X".into(), ..fields() }).unwrap_err();
    assert_eq!((e.code, e.path.as_deref()), (IssueCode::Value, Some("fields.patient_name")));
    assert!(!e.message.contains("agree"), "never repeats the value");
    let e = render_document(&treatment, &DocumentFields { organization: "x".repeat(201), ..fields() }).unwrap_err();
    assert_eq!(e.path.as_deref(), Some("fields.organization"));
    let e = render_document(&treatment, &DocumentFields { signer_relationship: Some("a\tb".into()), ..fields() }).unwrap_err();
    assert_eq!(e.path.as_deref(), Some("fields.signer_relationship"));
    let bad = Template { body: format!("{} {{{{ssn}}}}", treatment.body), ..treatment };
    let e = render_document(&bad, &fields()).unwrap_err();
    assert_eq!(e.path.as_deref(), Some("template.body"));
}

#[test]
fn documents_are_canonical() {
    let t = Template {
        kind: ConsentKind::Treatment,
        version: 2,
        title: "Consent to Treatment ".to_string(),
        body: "\r\n\r\nPatient: {{patient_name}}  \r\nBorn:\t{{birth_date}}\rAt {{organization}}.\u{2028}Cafe\u{301}\n\n\n\nEnd.   \n\n"
            .to_string(),
    };
    let f = DocumentFields { patient_name: "Zoe\u{308} Lo\u{301}pez".to_string(), ..fields() };
    let doc = render_document(&t, &f).unwrap();
    assert!(doc.starts_with(
        "Consent to Treatment\n\nPatient: Zoë López\nBorn: 1984-03-09\nAt Riverside Family Clinic.\nCafé\n\nEnd.\n\nBy signing"
    ));
    assert!(!doc.contains('\r') && !doc.contains('\t'));
    assert!(doc.lines().all(|l| l == l.trim_end()));
    assert!(!doc.contains("\n\n\n"));
    assert_eq!(doc, doc.trim_end());
    assert_eq!(doc, doc.nfc().collect::<String>());
    assert_eq!(canonicalize(&doc), doc, "idempotent");
    // The NFD and NFC spellings of a name give the same document and hash.
    let nfc = render_document(&t, &DocumentFields { patient_name: "Zoë López".to_string(), ..fields() }).unwrap();
    assert_eq!(document_sha256(&nfc), document_sha256(&doc));
}

#[test]
fn document_hash_is_sha256_of_the_utf8_bytes() {
    assert_eq!(document_sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_eq!(document_sha256("é"), <[u8; 32]>::from(Sha256::digest([0xc3, 0xa9])));
}

// --- the drawn signature ---

#[test]
fn signature_validation() {
    drawing().check().unwrap();
    let e = |s: DrawnSignature| s.check().unwrap_err();
    let with = |strokes: Vec<Vec<[u16; 2]>>| DrawnSignature { strokes, ..drawing() };
    assert_eq!(e(DrawnSignature { width: 99, ..drawing() }).path.as_deref(), Some("signature.width"));
    assert_eq!(e(DrawnSignature { width: 2001, ..drawing() }).path.as_deref(), Some("signature.width"));
    assert_eq!(e(DrawnSignature { height: 49, ..drawing() }).path.as_deref(), Some("signature.height"));
    assert_eq!(e(DrawnSignature { height: 1001, ..drawing() }).path.as_deref(), Some("signature.height"));
    DrawnSignature { width: 100, height: 50, strokes: vec![vec![[0, 0], [100, 50]]] }.check().unwrap();
    DrawnSignature { width: 2000, height: 1000, strokes: vec![vec![[0, 0], [2000, 1000]]] }.check().unwrap();
    assert_eq!(e(with(vec![])).code, IssueCode::Required);
    assert_eq!(e(with(vec![vec![[10, 10]]; 101])).path.as_deref(), Some("signature.strokes"));
    let mut hundred = vec![vec![[10, 10]]; 99];
    hundred.push(vec![[10, 10], [30, 10]]);
    with(hundred).check().unwrap();
    assert_eq!(e(with(vec![vec![[1, 1], [50, 1]], vec![]])).path.as_deref(), Some("signature.strokes[1]"));
    assert_eq!(e(with(vec![vec![[1, 1]; 2001]])).path.as_deref(), Some("signature.strokes[0]"));
    let mut long: Vec<[u16; 2]> = vec![[1, 1]; 1999];
    long.push([50, 1]);
    with(vec![long]).check().unwrap();
    assert_eq!(e(with(vec![vec![[1, 1], [601, 1]]])).path.as_deref(), Some("signature.strokes[0][1]"));
    assert_eq!(e(with(vec![vec![[1, 1], [50, 1]], vec![[5, 5], [5, 201]]])).path.as_deref(), Some("signature.strokes[1][1]"));
    with(vec![vec![[600, 200], [0, 0]]]).check().unwrap();
    // 11 strokes of 2000 points = 22000 > 20000; 10 of them are fine.
    let many = |n| with((0..n).map(|i| (0..2000).map(|j| [(j % 500) as u16, i as u16]).collect()).collect());
    many(10).check().unwrap();
    assert!(e(many(11)).message.contains("20000"));
    // A dot, or a drawing narrower than 10 units, is not a signature.
    assert!(e(with(vec![vec![[300, 100]]])).message.contains("too small"));
    assert!(e(with(vec![vec![[300, 10], [309, 190]]])).message.contains("too small"));
    with(vec![vec![[300, 100], [310, 100]]]).check().unwrap();
}

#[test]
fn signature_json_and_canonical_bytes() {
    let s = drawing();
    let bytes = s.canonical_bytes();
    assert_eq!(bytes, serde_json::to_vec(&s).unwrap());
    assert!(bytes.starts_with(br#"{"width":600,"height":200,"strokes":[[[40,150],[80,60]"#));
    let back: DrawnSignature = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back, s);
    // Whitespace and key order of the client's JSON do not change the hash.
    let loose: DrawnSignature = serde_json::from_str(
        r#"{ "strokes": [[[40,150],[80,60],[120,140],[160,70],[200,130]],[[230,100],[420,95]],[[450,80]]], "height": 200, "width": 600 }"#,
    )
    .unwrap();
    assert_eq!(loose.sha256(), s.sha256());
    assert_eq!(s.sha256_hex(), to_hex(&Sha256::digest(&bytes)));
    assert!(serde_json::from_str::<DrawnSignature>(r#"{"width":600,"height":200,"strokes":[],"extra":1}"#).is_err());
    assert!(serde_json::from_str::<DrawnSignature>(r#"{"width":600,"height":200,"strokes":[[[1,2,3]]]}"#).is_err());
    assert!(serde_json::from_str::<DrawnSignature>(r#"{"width":600,"height":200,"strokes":[[[-1,2]]]}"#).is_err());
    assert_eq!(format!("{s:?}"), "DrawnSignature(<redacted>)");
}

// --- signing ---

#[test]
fn sign_builds_a_consistent_record() {
    let c = consent(ConsentKind::Treatment, &fields());
    assert_eq!(c.kind, ConsentKind::Treatment);
    assert_eq!(c.template_version, 1);
    assert_eq!(c.template_sha256, builtin_template(ConsentKind::Treatment).sha256());
    assert_eq!(c.document_sha256, document_sha256_hex(&c.document));
    assert_eq!(c.signature_sha256, drawing().sha256_hex());
    assert_eq!(c.status, "active");
    assert_eq!(c.signer_relationship, None);
    assert!(!format!("{c:?}").contains("Ana"), "Debug hides PHI");
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(serde_json::from_str::<SignedConsent>(&json).unwrap(), c);

    let t = builtin_template(ConsentKind::Treatment);
    let dot = DrawnSignature { strokes: vec![vec![[5, 5]]], ..drawing() };
    assert!(sign(&t, &fields(), dot, ctx()).is_err());
    let local = SigningContext { signed_at_utc: "2025-05-01T10:03:22-04:00".into(), ..ctx() };
    assert_eq!(sign(&t, &fields(), drawing(), local).unwrap_err().path.as_deref(), Some("signed_at_utc"));
    let garbage = SigningContext { signed_at_utc: "yesterday".into(), ..ctx() };
    assert!(sign(&t, &fields(), drawing(), garbage).is_err());
    let rep = DocumentFields { signer_relationship: Some("legal guardian".into()), ..fields() };
    assert_eq!(sign(&t, &rep, drawing(), ctx()).unwrap().signer_relationship.as_deref(), Some("legal guardian"));
}

// --- the PDF ---

#[test]
fn pdf_is_deterministic() {
    for kind in ConsentKind::ALL {
        let c = consent(kind, &roi_fields());
        let a = render_pdf(&c);
        let b = render_pdf(&c.clone());
        assert_eq!(a, b);
        let again = render_pdf(&serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap());
        assert_eq!(a, again, "a stored and reloaded record renders the same bytes");
    }
}

/// A fixed record renders to fixed bytes across builds, not only within one run. If this
/// fails after a change to the layout, the templates or the pdf-writer version, PDFs handed
/// out before no longer verify by re-rendering: keep the old rendering for old records.
#[test]
fn pdf_bytes_are_pinned() {
    let c = consent(ConsentKind::Treatment, &fields());
    assert_eq!(to_hex(&Sha256::digest(render_pdf(&c))), "03656fbc49b7b68ddba735c1e69c9b214d45a1274cee137a3e7f076d6360a9ff");
}

#[test]
fn pdf_structure() {
    let c = consent(ConsentKind::Treatment, &fields());
    let pdf = render_pdf(&c);
    assert!(pdf.starts_with(b"%PDF-1.7\n"));
    assert!(pdf.ends_with(b"%%EOF\n") || pdf.ends_with(b"%%EOF"));
    assert_eq!(page_count(&pdf), 1);
    for needle in [
        "/EmbeddedFiles".as_bytes(),
        b"(consent-document.txt)",
        b"/Subtype /text#2Fplain",
        b"/BaseFont /Helvetica",
        b"/Encoding /WinAnsiEncoding",
        b"/ConsentId (0b9f2c1e-6a43-4d1c-9a55-2f1f7f3c6d10)",
        format!("/Subject (Document SHA-256: {})", c.document_sha256).as_bytes(),
        format!("(Document SHA-256: {})", c.document_sha256).as_bytes(),
        format!("(Signature SHA-256: {})", c.signature_sha256).as_bytes(),
        b"(Template: treatment version 1)",
        b"(Consent to Treatment)",
    ] {
        assert!(contains(&pdf, needle), "missing {}", String::from_utf8_lossy(needle));
    }
    // The canonical document is embedded verbatim (uncompressed).
    assert!(contains(&pdf, c.document.as_bytes()));
    assert!(contains(&pdf, format!("/Size {}", c.document.len()).as_bytes()));
    // The signature is drawn as paths: one moveto per stroke.
    let moves = String::from_utf8_lossy(&pdf).matches(" m\n").count();
    assert!(moves > drawing().strokes.len(), "{moves}: the signing line and each stroke");
    // Nothing about the clock: no dates in the Info dictionary.
    assert!(!contains(&pdf, b"/CreationDate") && !contains(&pdf, b"/ModDate"));
    assert!(!contains(&pdf, b"REVOKED"));
    // The file ID starts with the document hash.
    let id_hex: String = c.document_sha256[..32].to_uppercase();
    assert!(contains(&String::from_utf8_lossy(&pdf).to_uppercase().into_bytes(), format!("/ID [<{id_hex}>",).as_bytes()));
}

#[test]
fn revoked_consents_say_so() {
    let mut c = consent(ConsentKind::Telehealth, &fields());
    let active = render_pdf(&c);
    c.status = STATUS_REVOKED.to_string();
    c.revoked_at = Some("2025-06-02T09:00:00Z".to_string());
    let revoked = render_pdf(&c);
    assert!(contains(&revoked, b"(REVOKED 2025-06-02T09:00:00Z)"));
    assert_ne!(active, revoked);
    assert_eq!(verify_pdf(&active, &c), Err(VerifyError::PdfDiffers), "an old active copy does not verify as the revoked record");
    assert_eq!(verify_pdf(&revoked, &c), Ok(()));
}

#[test]
fn verify_accepts_the_rendered_pdf_and_rejects_tampering() {
    let c = consent(ConsentKind::ReleaseOfInformation, &roi_fields());
    let pdf = render_pdf(&c);
    assert_eq!(verify_pdf(&pdf, &c), Ok(()));

    // One flipped byte anywhere in the PDF.
    for at in [0, pdf.len() / 3, pdf.len() / 2, pdf.len() - 1] {
        let mut bad = pdf.clone();
        bad[at] ^= 0x01;
        assert_eq!(verify_pdf(&bad, &c), Err(VerifyError::PdfDiffers), "byte {at}");
    }
    assert_eq!(verify_pdf(&pdf[..pdf.len() - 1], &c), Err(VerifyError::PdfDiffers));

    // The stored document was changed (hash not updated).
    let mut tampered = c.clone();
    tampered.document = tampered.document.replace("continuity of care", "marketing");
    assert_eq!(verify_pdf(&pdf, &tampered), Err(VerifyError::DocumentHashMismatch));
    // ... and with the hash updated too, the PDF no longer matches the record.
    tampered.document_sha256 = document_sha256_hex(&tampered.document);
    assert_eq!(verify_pdf(&pdf, &tampered), Err(VerifyError::PdfDiffers));

    // The stored signature was changed.
    let mut forged = c.clone();
    forged.signature.strokes[0][0] = [41, 150];
    assert_eq!(verify_pdf(&pdf, &forged), Err(VerifyError::SignatureHashMismatch));
    let mut forged = c.clone();
    forged.signature_sha256 = "0".repeat(64);
    assert_eq!(verify_pdf(&pdf, &forged), Err(VerifyError::SignatureHashMismatch));

    // Any other field of the record (here the IP address) changes the PDF.
    let other = SignedConsent { ip: "198.51.100.7".into(), ..c.clone() };
    assert_eq!(verify_pdf(&pdf, &other), Err(VerifyError::PdfDiffers));
}

#[test]
fn long_documents_take_several_pages() {
    let t = Template {
        kind: ConsentKind::Treatment,
        version: 7,
        title: "Consent to Treatment".to_string(),
        body: format!(
            "Patient: {{{{patient_name}}}} ({{{{birth_date}}}}) at {{{{organization}}}}.\n\n{}",
            (1..=60)
                .map(|i| format!("{i}. I understand that this is paragraph {i} of a long consent, written to fill more than one page of the PDF with wrapped text."))
                .collect::<Vec<_>>()
                .join("\n\n")
        ),
    };
    let c = sign(&t, &fields(), drawing(), ctx()).unwrap();
    let pdf = render_pdf(&c);
    let pages = page_count(&pdf);
    assert!(pages > 1, "{pages}");
    assert!(contains(&pdf, format!("page {pages} of {pages})").as_bytes()));
    assert_eq!(render_pdf(&c), pdf);
    assert_eq!(verify_pdf(&pdf, &c), Ok(()));
    // A word longer than a line is broken, not lost.
    let t2 = Template { body: format!("{}\n\n{}", t.body, "x".repeat(400)), ..t };
    let c2 = sign(&t2, &fields(), drawing(), ctx()).unwrap();
    assert!(page_count(&render_pdf(&c2)) >= pages);
}

#[test]
fn names_outside_win_ansi_do_not_break_the_pdf() {
    for name in ["Đặng Thị Hương", "王秀英", "Ωμέγα Ψ", "Zoë O’Brien – “Ann” €5", "👩‍⚕️ test"] {
        let f = DocumentFields { patient_name: name.to_string(), signer_typed_name: name.to_string(), ..fields() };
        let c = sign(&builtin_template(ConsentKind::PrivacyPractices), &f, drawing(), ctx()).unwrap();
        let pdf = render_pdf(&c);
        assert_eq!(render_pdf(&c), pdf);
        assert_eq!(verify_pdf(&pdf, &c), Ok(()));
        // The exact text is embedded as UTF-8.
        assert!(contains(&pdf, name.as_bytes()));
    }
    let (bytes, substituted) = win_ansi("Đặng Thị Hương");
    assert_eq!(bytes, b"??ng Th? H??ng");
    assert!(substituted);
    let (bytes, substituted) = win_ansi("Zoë O’Brien – “Ann” €5 ß");
    assert_eq!(bytes, b"Zo\xeb O\x92Brien \x96 \x93Ann\x94 \x805 \xdf");
    assert!(!substituted);
    assert_eq!(win_ansi("a\u{7f}\u{81}b").0, b"a??b");
    // The note about substituted characters appears only when needed.
    let cjk = DocumentFields { patient_name: "王秀英".into(), signer_typed_name: "王秀英".into(), ..fields() };
    let pdf = render_pdf(&consent(ConsentKind::Treatment, &cjk));
    assert!(contains(&pdf, b"printed as '?'"));
    assert!(!contains(&render_pdf(&consent(ConsentKind::Treatment, &fields())), b"printed as '?'"));
}

#[test]
fn wrapping_keeps_lines_inside_the_text_width() {
    let text = win_ansi(&"Lorem ipsum dolor sit amet, consectetur adipiscing elit ".repeat(20)).0;
    let lines = wrap(&text, Font::Regular, BODY_SIZE, TEXT_W);
    assert!(lines.len() > 5);
    for l in &lines {
        assert!(Font::Regular.width(l, BODY_SIZE) <= TEXT_W);
        assert!(!l.starts_with(b" ") && !l.ends_with(b" "));
    }
    let joined: Vec<u8> = lines.join(&b' ');
    assert_eq!(joined, text.trim_ascii_end());
    let long = wrap(&[b'W'; 300], Font::Bold, 12.0, 100.0);
    assert!(long.len() > 1 && long.iter().all(|l| Font::Bold.width(l, 12.0) <= 100.0));
    assert_eq!(long.concat().len(), 300);
    // Known metrics (H 722, e 556, l 222, v 500, t 278, i 222, c 500, a 556).
    assert_eq!(Font::Regular.width(b"Helvetica", 1000.0), 4112.0);
}
