//! Consents: the templates a patient signs, the canonical text that is signed, the drawn
//! signature, the signed record and its PDF.
//!
//! The signed object is the *document*: the template's title and body with the patient's
//! details filled in, followed by an explicit statement of intent to sign, canonicalized (`\n`
//! line endings, NFC, no trailing white space). Its SHA-256 is recorded with the consent, printed
//! in the PDF and the document itself is embedded in the PDF as `consent-document.txt`, so anyone
//! can extract it and recompute the hash. The PDF is a pure function of the record (no clock, a
//! file `/ID` derived from the hashes): verifying a PDF means rendering the record again and
//! comparing bytes ([`verify_pdf`]).
//!
//! One file per part: `kind` (what a consent is about, its FHIR codes), `template`, `document`
//! (the canonical text and its hash), `signature` (the drawn signature), `signed` (the record and
//! signing), `pdf` (with `font`: metrics, encoding, word wrap) and `verify`.

mod document;
mod font;
mod kind;
mod pdf;
mod signature;
mod signed;
mod template;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
mod verify;

pub use document::{
    canonicalize, document_sha256, document_sha256_hex, render_document, DocumentFields, INTENT_STATEMENT, REPRESENTATIVE_STATEMENT,
};
pub use kind::{ConsentCoding, ConsentKind, CONSENT_SCOPE_SYSTEM, LOINC_SYSTEM};
pub use pdf::{render_pdf, EMBEDDED_DOCUMENT_NAME};
pub use signature::DrawnSignature;
pub use signed::{sign, SignedConsent, SigningContext, STATUS_ACTIVE, STATUS_REVOKED};
pub use template::{builtin_template, builtin_templates, Placeholder, Template};
pub use verify::{verify_pdf, VerifyError};
