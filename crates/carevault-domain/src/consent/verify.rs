//! Verifying a PDF against the stored record.

use super::{document_sha256_hex, render_pdf, SignedConsent};

/// Why a PDF or record failed [`verify_pdf`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The record's document does not hash to its recorded `document_sha256`.
    #[error("the consent's document does not match its recorded SHA-256")]
    DocumentHashMismatch,
    /// The record's drawn signature does not hash to its recorded `signature_sha256`.
    #[error("the consent's signature does not match its recorded SHA-256")]
    SignatureHashMismatch,
    /// The PDF is not byte for byte the one rendered from the record.
    #[error("the PDF differs from the one rendered from the consent record")]
    PdfDiffers,
}

/// Verifies a PDF against the stored record: the record's document and signature hash to the
/// recorded values, and the PDF is exactly [`render_pdf`] of the record.
pub fn verify_pdf(pdf: &[u8], c: &SignedConsent) -> Result<(), VerifyError> {
    if document_sha256_hex(&c.document) != c.document_sha256 {
        return Err(VerifyError::DocumentHashMismatch);
    }
    if c.signature.sha256_hex() != c.signature_sha256 {
        return Err(VerifyError::SignatureHashMismatch);
    }
    if render_pdf(c) != pdf {
        return Err(VerifyError::PdfDiffers);
    }
    Ok(())
}
