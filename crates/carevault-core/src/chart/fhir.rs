//! Chart records as FHIR R4: Encounter, DocumentReference (notes, addenda, documents),
//! Condition, Provenance.

use super::*;

impl ChartRecord {
    /// FHIR R4 rendering: Encounter, Condition, or DocumentReference (notes and addenda).
    pub fn to_fhir(&self) -> Value {
        let meta = json!({"versionId": self.version.to_string(), "lastUpdated": crate::format_instant(self.updated_at)});
        let patient = json!({"reference": format!("Patient/{}", self.patient_id)});
        match self.kind.as_str() {
            "encounter" => {
                let mut e = json!({
                    "resourceType": "Encounter", "id": self.id, "meta": meta,
                    "status": self.status,
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
                    "subject": patient,
                    "participant": [{"individual": {"reference": format!("Practitioner/{}", self.body["practitionerId"].as_str().unwrap_or(""))}}],
                    "location": [{"location": {"reference": format!("Location/{}", self.body["locationId"].as_str().unwrap_or(""))}}],
                    "period": {"start": crate::format_instant(self.body["start"].as_i64().unwrap_or(self.created_at))},
                });
                if let Some(end) = self.body["end"].as_i64() {
                    e["period"]["end"] = json!(crate::format_instant(end));
                }
                if let Some(a) = self.body["appointmentId"].as_str() {
                    e["appointment"] = json!([{"reference": format!("Appointment/{a}")}]);
                }
                e
            }
            "condition" => json!({
                "resourceType": "Condition", "id": self.id, "meta": meta,
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis"}]}],
                "code": {"coding": [{"system": carevault_domain::icd10::SYSTEM, "code": self.body["code"], "display": self.body["display"]}]},
                "subject": patient,
                "encounter": {"reference": format!("Encounter/{}", self.parent_id.as_deref().unwrap_or(""))},
                "recordedDate": crate::format_instant(self.created_at),
            }),
            _ => self.note_to_fhir(meta, patient),
        }
    }

    fn note_to_fhir(&self, meta: Value, patient: Value) -> Value {
        use base64::Engine;
        let text = signed_content(&self.kind, &self.body);
        let doc_status = match self.status.as_str() {
            "draft" => "preliminary",
            _ => "final",
        };
        let (code, display) = if self.kind == "addendum" { ("55107-7", "Addendum Document") } else { ("11506-3", "Progress note") };
        let mut d = json!({
            "resourceType": "DocumentReference", "id": self.id, "meta": meta,
            "status": "current",
            "docStatus": doc_status,
            "type": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
            "category": [{"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "code": "clinical-note"}]}],
            "subject": patient,
            "date": crate::format_instant(self.created_at),
            "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "data": base64::engine::general_purpose::STANDARD.encode(text.as_bytes())}}],
        });
        if self.kind == "addendum" {
            d["relatesTo"] = json!([{"code": "appends", "target": {"reference": format!("DocumentReference/{}", self.parent_id.as_deref().unwrap_or(""))}}]);
        } else if let Some(enc) = &self.parent_id {
            d["context"] = json!({"encounter": [{"reference": format!("Encounter/{enc}")}]});
        }
        if let Some(h) = &self.content_sha256 {
            d["content"][0]["attachment"]["title"] = json!(format!("SHA-256 {h}"));
        }
        d
    }

    /// FHIR R4 Provenance of a signed note or addendum: the author's signature (and the
    /// co-signer's), each over the SHA-256 of the signed content. None for a draft.
    pub fn provenance(&self) -> Option<Value> {
        use base64::Engine;
        let sig = self.body.get("signature")?;
        let one = |s: &Value, code: &str, display: &str| {
            json!({
                "type": [{"system": "urn:iso-astm:E1762-95:2013", "code": code, "display": display}],
                "when": crate::format_instant(s["at"].as_i64().unwrap_or(0)),
                "who": {"display": s["name"].as_str().unwrap_or("")},
                "sigFormat": "text/plain",
                "data": base64::engine::general_purpose::STANDARD.encode(format!("sha256:{}", s["sha256"].as_str().unwrap_or(""))),
            })
        };
        let mut signatures = vec![one(sig, "1.2.840.10065.1.12.1.1", "Author's Signature")];
        let mut agents = vec![json!({
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
            "who": {"display": sig["name"].as_str().unwrap_or("")},
        })];
        if let Some(c) = self.body.get("cosignature") {
            signatures.push(one(c, "1.2.840.10065.1.12.1.2", "Coauthor's Signature"));
            agents.push(json!({
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "verifier"}]},
                "who": {"display": c["name"].as_str().unwrap_or("")},
            }));
        }
        Some(json!({
            "resourceType": "Provenance",
            "id": format!("{}-{}", self.id, self.version),
            "target": [{"reference": format!("DocumentReference/{}/_history/{}", self.id, self.version)}],
            "recorded": crate::format_instant(sig["at"].as_i64().unwrap_or(0)),
            "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DocumentCompletion", "code": "LA", "display": "legally authenticated"}]},
            "agent": agents,
            "signature": signatures,
        }))
    }
}
