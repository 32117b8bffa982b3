//! The signed consent as stored, and signing.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::document::field_value;
use super::{document_sha256_hex, render_document, ConsentKind, DocumentFields, DrawnSignature, Template};
use crate::error::InputError;

pub const STATUS_ACTIVE: &str = "active";
pub const STATUS_REVOKED: &str = "revoked";

/// A signed consent as stored. `document` is the canonical document ([`render_document`]);
/// the hashes are lower-case hex.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedConsent {
    pub id: String,
    pub kind: ConsentKind,
    pub template_version: u32,
    pub template_sha256: String,
    pub title: String,
    pub document: String,
    pub document_sha256: String,
    pub signer_typed_name: String,
    pub signer_relationship: Option<String>,
    /// RFC 3339, UTC.
    pub signed_at_utc: String,
    /// The signer's local time as shown to them (RFC 3339 with offset, or as the caller formats it).
    pub signed_at_local: String,
    /// The signing device (e.g. the browser's user agent).
    pub device: String,
    pub ip: String,
    pub signature: DrawnSignature,
    pub signature_sha256: String,
    /// `active` or `revoked`.
    pub status: String,
    pub revoked_at: Option<String>,
}

impl fmt::Debug for SignedConsent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedConsent")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("template_version", &self.template_version)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Where and when a consent is signed (given by the caller: this crate has no clock).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningContext {
    pub id: String,
    /// RFC 3339 in UTC (`Z` or `+00:00`).
    pub signed_at_utc: String,
    pub signed_at_local: String,
    pub device: String,
    pub ip: String,
}

redacted_debug!(SigningContext);

/// Builds the record of a consent signed now: checks the signature, renders the document, and
/// computes the hashes. The typed name and relationship come from `fields`.
pub fn sign(
    template: &Template,
    fields: &DocumentFields,
    signature: DrawnSignature,
    ctx: SigningContext,
) -> Result<SignedConsent, InputError> {
    signature.check()?;
    let document = render_document(template, fields)?;
    let id = field_value(Some(&ctx.id), "id", 64)?.to_string();
    let utc = field_value(Some(&ctx.signed_at_utc), "signed_at_utc", 64)?;
    match OffsetDateTime::parse(utc, &Rfc3339) {
        Ok(t) if t.offset().is_utc() => {}
        _ => return Err(InputError::value("signed_at_utc", "an RFC 3339 time in UTC")),
    }
    let local = field_value(Some(&ctx.signed_at_local), "signed_at_local", 64)?.to_string();
    let device = field_value(Some(&ctx.device), "device", 512)?.to_string();
    let ip = field_value(Some(&ctx.ip), "ip", 64)?.to_string();
    let relationship = fields.representative()?.map(str::to_string);
    Ok(SignedConsent {
        id,
        kind: template.kind,
        template_version: template.version,
        template_sha256: template.sha256(),
        title: template.title.trim().to_string(),
        document_sha256: document_sha256_hex(&document),
        document,
        signer_typed_name: fields.signer_typed_name.trim().to_string(),
        signer_relationship: relationship,
        signed_at_utc: utc.to_string(),
        signed_at_local: local,
        device,
        ip,
        signature_sha256: signature.sha256_hex(),
        signature,
        status: STATUS_ACTIVE.to_string(),
        revoked_at: None,
    })
}

impl SignedConsent {
    pub fn is_revoked(&self) -> bool {
        self.status == STATUS_REVOKED
    }
}
