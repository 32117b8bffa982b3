//! Writes sample consent PDFs for checking with third-party tools (qpdf --check,
//! e2e/pdf_check.py with pypdf):
//!
//!     cargo run -p carevault-domain --example consent_pdf_samples -- /tmp/consent-pdfs
//!
//! The samples: each built-in kind, a release of information signed by a parent, a long
//! document over several pages, names outside WinAnsi (Vietnamese, Chinese), and a revoked one.

use std::error::Error;
use std::path::PathBuf;

use carevault_domain::consent::{
    builtin_template, render_pdf, sign, verify_pdf, ConsentKind, DocumentFields, DrawnSignature, SignedConsent, SigningContext, Template,
    STATUS_REVOKED,
};

fn fields(name: &str) -> DocumentFields {
    DocumentFields {
        patient_name: name.to_string(),
        birth_date: "1984-03-09".to_string(),
        organization: "Riverside Family Clinic".to_string(),
        recipient: Some("Dr. Lee, Lakeside Cardiology, 12 Harbor Road".to_string()),
        purpose: Some("continuity of care".to_string()),
        scope: Some("cardiology notes, ECGs and echocardiogram reports from 2023 to 2025".to_string()),
        expires: Some("2026-12-31".to_string()),
        signer_typed_name: name.to_string(),
        signer_relationship: None,
    }
}

/// A wavy "signature" and an underline, as a signing pad would send them.
fn drawing() -> DrawnSignature {
    let wave: Vec<[u16; 2]> = (0..=120u16).map(|i| [40 + i * 4, 100 + ((i % 16) as i32 - 8).unsigned_abs() as u16 * 6]).collect();
    DrawnSignature { width: 600, height: 200, strokes: vec![wave, vec![[60, 170], [300, 165], [520, 172]], vec![[540, 60]]] }
}

fn ctx(id: &str) -> SigningContext {
    SigningContext {
        id: id.to_string(),
        signed_at_utc: "2025-05-01T14:03:22Z".to_string(),
        signed_at_local: "2025-05-01T10:03:22-04:00".to_string(),
        device:
            "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
                .to_string(),
        ip: "203.0.113.24".to_string(),
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "/tmp/carevault-consent-pdfs".to_string()));
    std::fs::create_dir_all(&dir)?;
    let mut samples: Vec<(String, SignedConsent)> = Vec::new();

    for kind in ConsentKind::ALL {
        let c = sign(&builtin_template(kind), &fields("Ana María Núñez"), drawing(), ctx(&format!("sample-{}", kind.id())))?;
        samples.push((kind.id().to_string(), c));
    }

    let parent = DocumentFields {
        signer_typed_name: "Marta Núñez".to_string(),
        signer_relationship: Some("parent".to_string()),
        ..fields("Lucía Núñez")
    };
    samples.push((
        "roi-parent".to_string(),
        sign(&builtin_template(ConsentKind::ReleaseOfInformation), &parent, drawing(), ctx("sample-parent"))?,
    ));

    let long = Template {
        kind: ConsentKind::Treatment,
        version: 2,
        title: "Consent to Treatment".to_string(),
        body: format!(
            "Patient: {{{{patient_name}}}}\nDate of birth: {{{{birth_date}}}}\nProvider: {{{{organization}}}}\n\n{}",
            (1..=70)
                .map(|i| format!(
                    "{i}. I understand that this is paragraph {i} of a long consent, written to fill more than one page with wrapped text."
                ))
                .collect::<Vec<_>>()
                .join("\n\n")
        ),
    };
    samples.push(("long".to_string(), sign(&long, &fields("Ana María Núñez"), drawing(), ctx("sample-long"))?));

    for (name, who) in [("vietnamese", "Đặng Thị Hương"), ("chinese", "王秀英")] {
        samples.push((
            name.to_string(),
            sign(&builtin_template(ConsentKind::Treatment), &fields(who), drawing(), ctx(&format!("sample-{name}")))?,
        ));
    }

    let mut revoked = sign(&builtin_template(ConsentKind::Telehealth), &fields("Ana María Núñez"), drawing(), ctx("sample-revoked"))?;
    revoked.status = STATUS_REVOKED.to_string();
    revoked.revoked_at = Some("2025-06-02T09:00:00Z".to_string());
    samples.push(("revoked".to_string(), revoked));

    for (name, c) in &samples {
        let pdf = render_pdf(c);
        verify_pdf(&pdf, c)?;
        let path = dir.join(format!("{name}.pdf"));
        std::fs::write(&path, &pdf)?;
        println!("{} ({} bytes, document SHA-256 {})", path.display(), pdf.len(), c.document_sha256);
    }
    Ok(())
}
