//! The demographics form: registering a patient and editing a record (what the form does not
//! show is kept).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use carevault_core::CoreError;
use carevault_domain::patient::PatientData;
use maud::{html, Markup};
use serde_json::{json, Value};

use super::{full_name, gender_code, input_message, phone, FIELDS};
use crate::server::AppState;
use crate::ui::{error_page, page, page_status, post_form, ui_form, FormData, Ui};

/// What the demographics form holds (all trimmed text).
#[derive(Default, Debug, PartialEq)]
pub(super) struct Demographics {
    given: String,
    family: String,
    birthdate: String,
    gender: String,
    phone: String,
    line: String,
    city: String,
    postal: String,
}

impl Demographics {
    fn from_form(f: &FormData) -> Self {
        let g = |k: &str| f.get(k).to_string();
        Demographics {
            given: g("given"),
            family: g("family"),
            birthdate: g("birthdate"),
            gender: g("gender"),
            phone: g("phone"),
            line: g("line"),
            city: g("city"),
            postal: g("postal"),
        }
    }

    fn from_record(d: &PatientData) -> Self {
        let n = d.name.iter().find(|n| n.use_.as_deref() == Some("official")).or(d.name.first());
        let a = d.address.first();
        Demographics {
            given: n.map(|n| n.given.join(" ")).unwrap_or_default(),
            family: n.and_then(|n| n.family.clone()).unwrap_or_default(),
            birthdate: d.birth_date.map(|b| b.to_string()).unwrap_or_default(),
            gender: d.gender.map(gender_code).unwrap_or_default().into(),
            phone: phone(d).unwrap_or_default().into(),
            line: a.and_then(|a| a.line.first().cloned()).unwrap_or_default(),
            city: a.and_then(|a| a.city.clone()).unwrap_or_default(),
            postal: a.and_then(|a| a.postal_code.clone()).unwrap_or_default(),
        }
    }

    fn value(&self, id: &str) -> &str {
        match id {
            "given" => &self.given,
            "family" => &self.family,
            "birthdate" => &self.birthdate,
            "gender" => &self.gender,
            "phone" => &self.phone,
            "line" => &self.line,
            "city" => &self.city,
            _ => &self.postal,
        }
    }

    /// Writes the form's values into a FHIR Patient (a new one, or the current version for an
    /// update): what the form does not show (identifiers, other names, phones and addresses) is
    /// kept; an emptied field is removed so the core judges what is required.
    fn apply(&self, mut p: Value) -> Value {
        fn set(obj: &mut Value, key: &str, v: Option<Value>) {
            if let Some(o) = obj.as_object_mut() {
                match v {
                    Some(v) => o.insert(key.into(), v),
                    None => o.remove(key),
                };
            }
        }
        let text = |s: &str| (!s.is_empty()).then(|| Value::from(s));
        // The name: the official one (or the first), which the chart shows.
        let given: Vec<&str> = self.given.split_whitespace().collect();
        let mut names = p["name"].as_array().cloned().unwrap_or_default();
        let i = names.iter().position(|n| n["use"] == "official").unwrap_or(0);
        if names.is_empty() {
            names.push(json!({"use": "official"}));
        }
        if let Some(n) = names.get_mut(i) {
            set(n, "text", None);
            set(n, "family", text(&self.family));
            set(n, "given", (!given.is_empty()).then(|| json!(given)));
        }
        names.retain(|n| n.get("family").is_some() || n.get("given").is_some() || n.get("text").is_some());
        set(&mut p, "name", (!names.is_empty()).then_some(Value::Array(names)));
        set(&mut p, "birthDate", text(&self.birthdate));
        set(&mut p, "gender", text(&self.gender));
        // The first phone number.
        let mut telecom = p["telecom"].as_array().cloned().unwrap_or_default();
        match (telecom.iter().position(|t| t["system"] == "phone"), text(&self.phone)) {
            (Some(i), Some(v)) => telecom[i]["value"] = v,
            (Some(i), None) => {
                telecom.remove(i);
            }
            (None, Some(v)) => telecom.push(json!({"system": "phone", "value": v})),
            (None, None) => {}
        }
        set(&mut p, "telecom", (!telecom.is_empty()).then_some(Value::Array(telecom)));
        // The first address: its first line, city and postal code.
        let mut addresses = p["address"].as_array().cloned().unwrap_or_default();
        if addresses.is_empty() {
            addresses.push(json!({}));
        }
        let a = &mut addresses[0];
        let mut lines = a["line"].as_array().cloned().unwrap_or_default();
        match (lines.is_empty(), text(&self.line)) {
            (_, Some(v)) if lines.is_empty() => lines.push(v),
            (_, Some(v)) => lines[0] = v,
            (false, None) => {
                lines.remove(0);
            }
            (true, None) => {}
        }
        set(a, "line", (!lines.is_empty()).then_some(Value::Array(lines)));
        set(a, "city", text(&self.city));
        set(a, "postalCode", text(&self.postal));
        addresses.retain(|a| a.as_object().is_some_and(|o| !o.is_empty()));
        set(&mut p, "address", (!addresses.is_empty()).then_some(Value::Array(addresses)));
        p
    }
}

fn field(v: &Demographics, id: &'static str, invalid: Option<&str>) -> Markup {
    let label = FIELDS.iter().find(|f| f.0 == id).map_or(id, |f| f.1);
    let bad = invalid == Some(id);
    let value = v.value(id);
    html! {
        div {
            label for=(id) { (label) }
            @match id {
                "gender" => select id=(id) name=(id) aria-invalid=[bad.then_some("true")] aria-describedby=[bad.then_some("form-error")] {
                    option value="" selected[value.is_empty()] { "(not recorded)" }
                    @for g in ["male", "female", "other", "unknown"] { option value=(g) selected[value == g] { (g) } }
                },
                // A stored year or year-month does not fit a date picker: keep it as text.
                "birthdate" if !value.is_empty() && value.len() != 10 => input id=(id) name=(id) type="text" value=(value) aria-invalid=[bad.then_some("true")] aria-describedby=[bad.then_some("form-error")];,
                _ => input id=(id) name=(id) value=(value) aria-invalid=[bad.then_some("true")] aria-describedby=[bad.then_some("form-error")]
                    type=(match id { "birthdate" => "date", "phone" => "tel", _ => "text" })
                    autocomplete="off" required[id == "family"];,
            }
        }
    }
}

fn demographics_form(ui: &Ui, action: &str, button: &str, v: &Demographics, version: Option<i64>, error: Option<&CoreError>) -> Markup {
    let (invalid, message) = error.map(|e| input_message(&FIELDS, e)).unzip();
    let inner = html! {
        @if let Some(m) = &message { p id="form-error" class="error" role="alert" { (m) } }
        @if let Some(ver) = version { input type="hidden" name="version" value=(ver); }
        div class="grid" {
            @for id in ["given", "family", "birthdate", "gender", "phone", "line", "city", "postal"] { (field(v, id, invalid.flatten())) }
        }
        div class="actions" { button type="submit" { (button) } }
    };
    post_form(ui, action, "demographics", inner)
}

/// `GET /ui/patients/new`
pub(super) async fn new_form(ui: Ui) -> Response {
    let content = html! {
        h1 { "Register a new patient" }
        (demographics_form(&ui, "/ui/patients", "Register patient", &Demographics::default(), None, None))
    };
    page(&ui, "Register a new patient", content)
}

/// `POST /ui/patients`
pub(super) async fn register(ui: Ui, State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let v = Demographics::from_form(&f);
    let fhir = v.apply(json!({"resourceType": "Patient", "active": true}));
    match st.vault.create_patient(&ui.actor, ui.purpose, fhir.to_string().as_bytes()).await {
        Ok(rec) => Redirect::to(&format!("/ui/patients/{}", rec.id)).into_response(),
        Err(e @ CoreError::Invalid(_)) => {
            let content = html! {
                h1 { "Register a new patient" }
                (demographics_form(&ui, "/ui/patients", "Register patient", &v, None, Some(&e)))
            };
            page_status(&ui, StatusCode::BAD_REQUEST, "Register a new patient", content)
        }
        Err(e) => error_page(Some(&ui), &e),
    }
}

// ----- edit -------------------------------------------------------------------------------------

fn edit_page(ui: &Ui, status: StatusCode, id: &str, name: &str, v: &Demographics, version: i64, error: Option<&CoreError>) -> Response {
    let content = html! {
        h1 { "Edit " (name) }
        (demographics_form(ui, &format!("/ui/patients/{id}/edit"), "Save changes", v, Some(version), error))
        @if matches!(error, Some(CoreError::VersionConflict { .. })) {
            p { a href={ "/ui/patients/" (id) "/edit" } { "Load the current version" } " (your changes above are not saved)." }
        }
        p { a href={ "/ui/patients/" (id) } { "Back to the chart" } }
    };
    page_status(ui, status, "Edit demographics", content)
}

/// `GET /ui/patients/{id}/edit`
pub(super) async fn edit_form(ui: Ui, State(st): State<AppState>, Path(id): Path<String>) -> Response {
    match st.vault.read_patient(&ui.actor, ui.purpose, &id).await {
        Ok(rec) => edit_page(&ui, StatusCode::OK, &id, &full_name(&rec.data), &Demographics::from_record(&rec.data), rec.version, None),
        Err(e) => error_page(Some(&ui), &e),
    }
}

/// `POST /ui/patients/{id}/edit`: a new version, refused if the record changed since the form
/// was loaded (its version travels in the form).
pub(super) async fn edit(ui: Ui, State(st): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Response {
    let f = match ui_form(&ui, &headers, body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let v = Demographics::from_form(&f);
    let version = f.get("version").parse::<i64>().ok();
    let p = ui.purpose;
    // The current record carries what the form does not show (MRN, other names and contacts).
    let rec = match st.vault.read_patient(&ui.actor, p, &id).await {
        Ok(r) => r,
        Err(e) => return error_page(Some(&ui), &e),
    };
    let fhir = v.apply(rec.data.to_fhir(rec.id.as_str(), rec.version, &carevault_core::format_instant(rec.last_updated)));
    match st.vault.update_patient(&ui.actor, p, &id, fhir.to_string().as_bytes(), Some(version.unwrap_or(0))).await {
        Ok(_) => Redirect::to(&format!("/ui/patients/{id}")).into_response(),
        Err(e @ (CoreError::Invalid(_) | CoreError::VersionConflict { .. })) => {
            let status = crate::error::status_of(&e, false);
            edit_page(&ui, status, &id, &full_name(&rec.data), &v, version.unwrap_or(rec.version), Some(&e))
        }
        Err(e) => error_page(Some(&ui), &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_keeps_what_the_form_does_not_show() {
        let current = json!({
            "resourceType": "Patient", "id": "p1",
            "identifier": [{"system": "urn:mrn", "value": "123"}],
            "name": [{"use": "nickname", "given": ["Addy"]}, {"use": "official", "family": "Byron", "given": ["Ada"], "text": "Ada Byron"}],
            "telecom": [{"system": "email", "value": "a@example.org"}, {"system": "phone", "value": "555-0100"}],
            "address": [{"line": ["1 Old St", "Flat 2"], "city": "London", "country": "GB"}],
            "gender": "female", "birthDate": "1815-12-10"
        });
        let form = Demographics {
            given: "Ada Augusta".into(),
            family: "Lovelace".into(),
            birthdate: "1815-12-10".into(),
            gender: String::new(),
            phone: String::new(),
            line: "12 St James's Square".into(),
            city: "London".into(),
            postal: "SW1".into(),
        };
        let p = form.apply(current);
        assert_eq!(p["identifier"][0]["value"], "123");
        assert_eq!(p["name"][0]["given"], json!(["Addy"]));
        assert_eq!(p["name"][1], json!({"use": "official", "family": "Lovelace", "given": ["Ada", "Augusta"]}));
        assert_eq!(p["telecom"], json!([{"system": "email", "value": "a@example.org"}]));
        assert_eq!(
            p["address"],
            json!([{"line": ["12 St James's Square", "Flat 2"], "city": "London", "postalCode": "SW1", "country": "GB"}])
        );
        assert!(p.get("gender").is_none());
    }

    #[test]
    fn empty_registration_leaves_out_every_field() {
        let p = Demographics::default().apply(json!({"resourceType": "Patient"}));
        assert_eq!(p, json!({"resourceType": "Patient"}));
    }
}
