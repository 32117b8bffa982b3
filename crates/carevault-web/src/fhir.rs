//! FHIR R4 REST handlers. Which handler serves which interaction, and the CapabilityStatement,
//! are in `capability.rs`.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use carevault_core::{Actor, FhirPatient, PatientRecord, SearchPage};
use carevault_domain::{AuditAction, InputError, IssueCode, PurposeOfUse};
use serde_json::{json, Value};

use crate::auth::{Authed, Fhir, Purposed};
use crate::capability::accepted_params;
use crate::error::{fhir_json, operation_outcome, FhirError};
use crate::extract::{json_content_type, read_body};
use crate::server::AppState;

type FhirResult = Result<Response, FhirError>;

/// `https://host[:port]/fhir/r4` from the configured public origin. The request's `Host`
/// header never shapes a link: a client could otherwise plant another server's address in
/// links and `Location` headers that other clients follow.
fn base_url(st: &AppState) -> String {
    format!("{}/fhir/r4", st.public_origin)
}

fn http_date(micros: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(micros / 1_000_000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT");
    t.format(&f).unwrap_or_default()
}

fn resource_response(status: StatusCode, rec: &PatientRecord, location: Option<String>) -> Response {
    let mut r = fhir_json(status, &FhirPatient(rec));
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("W/\"{}\"", rec.version)) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&http_date(rec.last_updated)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    if let Some(loc) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        h.insert(header::LOCATION, loc.clone());
        h.insert(header::CONTENT_LOCATION, loc);
    }
    r
}

/// Reads a JSON body within the configured limit. A refusal is audited.
async fn body_bytes(
    st: &AppState,
    actor: &Actor,
    action: AuditAction,
    id: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<axum::body::Bytes, Response> {
    let (status, code, reason) = if !json_content_type(headers) {
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not-supported", crate::extract::BodyError::MediaType.reason())
    } else {
        match read_body(headers, body, st.body_limit).await {
            Ok(b) => return Ok(b),
            Err(e @ crate::extract::BodyError::TooLarge(_)) => (StatusCode::PAYLOAD_TOO_LARGE, "too-costly", e.reason()),
            Err(e) => (StatusCode::BAD_REQUEST, "structure", e.reason()),
        }
    };
    if let Err(e) = st.vault.record_rejected_request(actor, action, id, &reason).await {
        return Err(axum::response::IntoResponse::into_response(FhirError::from(e)));
    }
    Err(fhir_json(status, &operation_outcome(code, &reason, None, "CV-INPUT-002")))
}

pub(crate) async fn create(
    State(st): State<AppState>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
    headers: HeaderMap,
    body: Body,
) -> FhirResult {
    let bytes = match body_bytes(&st, &actor, AuditAction::Create, None, &headers, body).await {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    let rec = st.vault.create_patient(&actor, p, &bytes).await?;
    let loc = format!("{}/Patient/{}/_history/{}", base_url(&st), rec.id, rec.version);
    Ok(resource_response(StatusCode::CREATED, &rec, Some(loc)))
}

pub(crate) async fn read(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
) -> FhirResult {
    let rec = st.vault.read_patient(&actor, p, &id).await?;
    Ok(resource_response(StatusCode::OK, &rec, None))
}

pub(crate) async fn vread(
    State(st): State<AppState>,
    Path((id, vid)): Path<(String, String)>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
) -> FhirResult {
    let rec = st.vault.read_patient_version(&actor, p, &id, &vid).await?;
    Ok(resource_response(StatusCode::OK, &rec, None))
}

fn parse_if_match(headers: &HeaderMap) -> Result<Option<i64>, InputError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or_default().trim();
    let inner = s.strip_prefix("W/").unwrap_or(s).trim_matches('"');
    inner
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .map(Some)
        .ok_or_else(|| InputError::new(IssueCode::Value, Some("header If-Match".to_string()), "must be a version ETag such as W/\"3\""))
}

pub(crate) async fn update(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
    body: Body,
) -> FhirResult {
    let if_match = match parse_if_match(&headers) {
        Ok(m) => m,
        Err(e) => {
            st.vault.record_rejected_request(&actor, AuditAction::Update, Some(&id), "invalid If-Match header").await?;
            return Err(e.into());
        }
    };
    let bytes = match body_bytes(&st, &actor, AuditAction::Update, Some(&id), &headers, body).await {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    match st.vault.update_patient(&actor, p, &id, &bytes, if_match).await {
        Ok(rec) => Ok(resource_response(StatusCode::OK, &rec, None)),
        Err(error) => Err(FhirError { error, if_match_given: if_match.is_some() }),
    }
}

fn entry(base: &str, rec: &PatientRecord) -> Value {
    json!({"fullUrl": format!("{base}/Patient/{}", rec.id), "resource": rec.to_fhir()})
}

pub(crate) async fn history(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
) -> FhirResult {
    let recs = st.vault.patient_history(&actor, p, &id).await?;
    let base = base_url(&st);
    let entries: Vec<Value> = recs
        .iter()
        .map(|r| {
            let mut e = entry(&base, r);
            let (method, url, status) = if r.version == 1 { ("POST", "Patient".to_string(), "201 Created") } else { ("PUT", format!("Patient/{}", r.id), "200 OK") };
            e["request"] = json!({"method": method, "url": url});
            e["response"] = json!({"status": status, "etag": format!("W/\"{}\"", r.version), "lastModified": carevault_core::format_instant(r.last_updated)});
            e
        })
        .collect();
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "history",
        "total": entries.len(),
        "link": [{"relation": "self", "url": format!("{base}/Patient/{id}/_history")}],
        "entry": entries,
    });
    Ok(fhir_json(StatusCode::OK, &bundle))
}

fn query_url(base: &str, params: &[(String, String)], count: usize, offset: usize) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.append_pair("_count", &count.to_string());
    s.append_pair("_offset", &offset.to_string());
    format!("{base}/Patient?{}", s.finish())
}

/// A searchset Bundle, serialized straight to the output (keys in the order a `Value` map
/// would write them).
#[derive(serde::Serialize)]
struct SearchBundle<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry: Vec<SearchEntry<'a>>,
    link: Vec<Value>,
    #[serde(rename = "resourceType")]
    resource_type: &'static str,
    total: usize,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(serde::Serialize)]
struct SearchEntry<'a> {
    #[serde(rename = "fullUrl")]
    full_url: String,
    resource: FhirPatient<'a>,
    search: SearchMode,
}

#[derive(serde::Serialize)]
struct SearchMode {
    mode: &'static str,
}

fn search_bundle<'a>(base: &str, page: &'a SearchPage) -> SearchBundle<'a> {
    let mut link = vec![json!({"relation": "self", "url": query_url(base, &page.params, page.count, page.offset)})];
    if page.count > 0 && page.offset + page.count < page.total {
        link.push(json!({"relation": "next", "url": query_url(base, &page.params, page.count, page.offset + page.count)}));
    }
    if page.offset > 0 {
        link.push(json!({"relation": "previous", "url": query_url(base, &page.params, page.count, page.offset.saturating_sub(page.count.max(1)))}));
    }
    let entry = page
        .records
        .iter()
        .map(|r| SearchEntry {
            full_url: format!("{base}/Patient/{}", r.id),
            resource: FhirPatient(r),
            search: SearchMode { mode: "match" },
        })
        .collect();
    SearchBundle { entry, link, resource_type: "Bundle", total: page.total, kind: "searchset" }
}

fn parse_pairs(raw: &[u8]) -> Result<Vec<(String, String)>, InputError> {
    let mut out = Vec::new();
    for (k, v) in form_urlencoded::parse(raw) {
        if k.contains('\u{FFFD}') || v.contains('\u{FFFD}') {
            return Err(InputError::new(IssueCode::Structure, None, "search parameters must be valid UTF-8"));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    if out.len() > 30 {
        return Err(InputError::new(IssueCode::Invalid, None, "at most 30 search parameters are accepted"));
    }
    Ok(out)
}

async fn run_search(st: &AppState, actor: &Actor, p: PurposeOfUse, raw: &[u8]) -> FhirResult {
    let pairs = match parse_pairs(raw) {
        Ok(p) => p,
        Err(e) => {
            st.vault.record_rejected_request(actor, AuditAction::Search, None, &e.message).await?;
            return Err(e.into());
        }
    };
    let page = st.vault.search_patients(actor, p, &pairs).await?;
    Ok(fhir_json(StatusCode::OK, &search_bundle(&base_url(st), &page)))
}

pub(crate) async fn search(
    State(st): State<AppState>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
    RawQuery(q): RawQuery,
) -> FhirResult {
    run_search(&st, &actor, p, q.unwrap_or_default().as_bytes()).await
}

/// `POST /Patient/_search` with a form body keeps search terms out of URLs and logs.
pub(crate) async fn search_post(
    State(st): State<AppState>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> FhirResult {
    let form =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        st.vault
            .record_rejected_request(&actor, AuditAction::Search, None, "search body must be application/x-www-form-urlencoded")
            .await?;
        return Ok(fhir_json(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &operation_outcome("not-supported", "a search body must be application/x-www-form-urlencoded", None, "CV-INPUT-002"),
        ));
    }
    let bytes = match read_body(&headers, body, 64 * 1024).await {
        Ok(b) => b,
        Err(e) => {
            st.vault.record_rejected_request(&actor, AuditAction::Search, None, &e.reason()).await?;
            return Ok(fhir_json(StatusCode::PAYLOAD_TOO_LARGE, &operation_outcome("too-costly", &e.reason(), None, "CV-INPUT-002")));
        }
    };
    let mut raw = q.unwrap_or_default().into_bytes();
    if !raw.is_empty() && !bytes.is_empty() {
        raw.push(b'&');
    }
    raw.extend_from_slice(&bytes);
    run_search(&st, &actor, p, &raw).await
}

/// Anything else under `/fhir/r4`: a FHIR-shaped 404 or 405.
pub(crate) async fn fallback(method: Method) -> Response {
    if method == Method::GET || method == Method::POST || method == Method::PUT || method == Method::DELETE {
        fhir_json(
            StatusCode::NOT_FOUND,
            &operation_outcome(
                "not-supported",
                "this resource type or interaction is not supported; see /fhir/r4/metadata",
                None,
                "CV-NOTFOUND-002",
            ),
        )
    } else {
        fhir_json(StatusCode::METHOD_NOT_ALLOWED, &operation_outcome("not-supported", "method not allowed", None, "CV-NOTFOUND-003"))
    }
}

fn allergy_response(status: StatusCode, rec: &carevault_core::AllergyRecord, location: Option<String>) -> Response {
    let mut r = fhir_json(status, &rec.to_fhir());
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("W/\"{}\"", rec.version)) {
        h.insert(header::ETAG, v);
    }
    if let Some(loc) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        h.insert(header::LOCATION, loc);
    }
    r
}

/// `POST /fhir/r4/AllergyIntolerance`: clinical data; needs a care relationship.
pub(crate) async fn allergy_create(
    State(st): State<AppState>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
    headers: HeaderMap,
    body: Body,
) -> FhirResult {
    let bytes = match body_bytes(&st, &actor, AuditAction::Create, None, &headers, body).await {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    let rec = st.vault.create_allergy(&actor, p, &bytes).await?;
    // AllergyIntolerance has no vread (see the CapabilityStatement): the Location is the resource.
    let loc = format!("{}/AllergyIntolerance/{}", base_url(&st), rec.id);
    Ok(allergy_response(StatusCode::CREATED, &rec, Some(loc)))
}

pub(crate) async fn allergy_read(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
) -> FhirResult {
    let rec = st.vault.read_allergy(&actor, p, &id).await?;
    Ok(allergy_response(StatusCode::OK, &rec, None))
}

/// `GET /fhir/r4/AllergyIntolerance?patient=<id>`: the only search supported.
pub(crate) async fn allergy_search(
    State(st): State<AppState>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
    RawQuery(q): RawQuery,
) -> FhirResult {
    let params: Vec<(String, String)> =
        q.as_deref().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let patient = match params.as_slice() {
        [(k, v)] if k == "patient" => v.strip_prefix("Patient/").unwrap_or(v).to_string(),
        _ => {
            return Err(InputError::new(
                IssueCode::NotSupported,
                Some("query".to_string()),
                "search AllergyIntolerance by exactly one parameter: patient",
            )
            .into());
        }
    };
    let recs = st.vault.patient_allergies(&actor, p, &patient).await?;
    let base = base_url(&st);
    let entries: Vec<Value> = recs
        .iter()
        .map(|r| json!({"fullUrl": format!("{base}/AllergyIntolerance/{}", r.id), "resource": r.to_fhir(), "search": {"mode": "match"}}))
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": recs.len(), "entry": entries});
    Ok(fhir_json(StatusCode::OK, &bundle))
}

fn searchset(base: &str, resources: Vec<Value>) -> Value {
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|r| {
            let url = format!("{base}/{}/{}", r["resourceType"].as_str().unwrap_or(""), r["id"].as_str().unwrap_or(""));
            json!({"fullUrl": url, "resource": r, "search": {"mode": "match"}})
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries})
}

fn only_params(q: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, InputError> {
    let params: Vec<(String, String)> = q.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    if let Some((k, _)) = params.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        let _ = k;
        return Err(InputError::new(
            IssueCode::NotSupported,
            Some("query".to_string()),
            format!("supported search parameters: {}", if allowed.is_empty() { "none".to_string() } else { allowed.join(", ") }),
        ));
    }
    Ok(params)
}

/// `GET /fhir/r4/Practitioner/{id}`: the practice directory.
pub(crate) async fn practitioner_read(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Authed { actor, .. }: Purposed<Fhir>,
) -> FhirResult {
    let p = st.vault.practitioner(&actor, &id).await?;
    Ok(fhir_json(StatusCode::OK, &p.to_fhir()))
}

/// `GET /fhir/r4/Practitioner[?identifier=NPI]`.
pub(crate) async fn practitioner_search(
    State(st): State<AppState>,
    Authed { actor, .. }: Purposed<Fhir>,
    RawQuery(q): RawQuery,
) -> FhirResult {
    let params = only_params(q.as_deref(), &accepted_params("Practitioner"))?;
    let npi = params.first().map(|(_, v)| v.rsplit('|').next().unwrap_or("").to_string());
    let (_, list) = st.vault.directory(&actor).await?;
    let found = list.iter().filter(|p| npi.as_ref().is_none_or(|n| &p.npi == n)).map(|p| p.to_fhir()).collect();
    Ok(fhir_json(StatusCode::OK, &searchset(&base_url(&st), found)))
}

/// `GET /fhir/r4/PractitionerRole[?practitioner=id]`.
pub(crate) async fn practitioner_role_search(
    State(st): State<AppState>,
    Authed { actor, .. }: Purposed<Fhir>,
    RawQuery(q): RawQuery,
) -> FhirResult {
    let params = only_params(q.as_deref(), &accepted_params("PractitionerRole"))?;
    let who = params.first().map(|(_, v)| v.strip_prefix("Practitioner/").unwrap_or(v).to_string());
    let (_, list) = st.vault.directory(&actor).await?;
    let found = list.iter().filter(|p| who.as_ref().is_none_or(|w| &p.id == w)).flat_map(|p| p.roles_to_fhir()).collect();
    Ok(fhir_json(StatusCode::OK, &searchset(&base_url(&st), found)))
}

/// `GET /fhir/r4/Organization/{id}` and `GET /fhir/r4/Location/{id}`.
pub(crate) async fn organization_read(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Authed { actor, .. }: Purposed<Fhir>,
) -> FhirResult {
    Ok(fhir_json(StatusCode::OK, &st.vault.directory_unit(&actor, "Organization", &id).await?.to_fhir()))
}

pub(crate) async fn location_read(State(st): State<AppState>, Path(id): Path<String>, Authed { actor, .. }: Purposed<Fhir>) -> FhirResult {
    Ok(fhir_json(StatusCode::OK, &st.vault.directory_unit(&actor, "Location", &id).await?.to_fhir()))
}

/// A Schedule's id joins its practitioner and location: `{practitioner}.{location}`.
fn schedule_parts(id: &str) -> Result<(&str, &str), InputError> {
    id.split_once('.').ok_or_else(|| InputError::value("Schedule.id", "a schedule id is {practitioner}.{location}"))
}

/// `GET /fhir/r4/Schedule/{practitioner}.{location}`.
pub(crate) async fn schedule_read(State(st): State<AppState>, Path(id): Path<String>, Authed { actor, .. }: Purposed<Fhir>) -> FhirResult {
    let (pr, loc) = schedule_parts(&id)?;
    let p = st.vault.practitioner(&actor, pr).await?;
    if !p.roles.iter().any(|r| r.location_id.as_deref().is_none_or(|l| l == loc)) {
        return Err(carevault_core::CoreError::NotFound { resource: "Schedule".into() }.into());
    }
    st.vault.directory_unit(&actor, "Location", loc).await?;
    let body = json!({"resourceType": "Schedule", "id": id, "active": true,
        "actor": [{"reference": format!("Practitioner/{pr}")}, {"reference": format!("Location/{loc}")}]});
    Ok(fhir_json(StatusCode::OK, &body))
}

/// `GET /fhir/r4/Slot?schedule=Schedule/{id}&start=YYYY-MM-DD[&duration=minutes]`: free slots of
/// one local day.
pub(crate) async fn slot_search(State(st): State<AppState>, Authed { actor, .. }: Purposed<Fhir>, RawQuery(q): RawQuery) -> FhirResult {
    let params = only_params(q.as_deref(), &accepted_params("Slot"))?;
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let schedule = get("schedule").map(|s| s.strip_prefix("Schedule/").unwrap_or(s).to_string());
    let (Some(schedule), Some(date)) = (schedule, get("start")) else {
        return Err(InputError::new(IssueCode::Required, Some("query".to_string()), "schedule and start (a date) are required").into());
    };
    let minutes: u16 = match get("duration") {
        None => 30,
        Some(d) => d.parse().map_err(|_| InputError::value("duration", "whole minutes"))?,
    };
    let (pr, loc) = schedule_parts(&schedule)?;
    let slots = st.vault.free_slots(&actor, pr, loc, date, 1, minutes).await?;
    let resources = slots
        .iter()
        .map(|s| {
            json!({"resourceType": "Slot", "schedule": {"reference": format!("Schedule/{schedule}")}, "status": "free",
                "start": carevault_core::format_instant(s.start), "end": carevault_core::format_instant(s.end)})
        })
        .collect();
    Ok(fhir_json(StatusCode::OK, &searchset(&base_url(&st), resources)))
}

/// `POST /fhir/r4/Appointment`: books a free slot.
pub(crate) async fn appointment_create(
    State(st): State<AppState>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
    headers: HeaderMap,
    body: Body,
) -> FhirResult {
    let bytes = match body_bytes(&st, &actor, AuditAction::Create, None, &headers, body).await {
        Ok(b) => b,
        Err(r) => return Ok(r),
    };
    let req = carevault_domain::schedule::parse_appointment(&bytes)?;
    let a = st.vault.book_appointment(&actor, p, &req.patient_id, &req.practitioner_id, &req.location_id, req.start, req.minutes).await?;
    let mut r = fhir_json(StatusCode::CREATED, &a.to_fhir());
    if let Ok(v) = HeaderValue::from_str(&format!("{}/Appointment/{}", base_url(&st), a.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

pub(crate) async fn appointment_read(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
) -> FhirResult {
    Ok(fhir_json(StatusCode::OK, &st.vault.read_appointment(&actor, p, &id).await?.to_fhir()))
}

/// `GET /fhir/r4/Appointment?date=ge..&date=lt..[&practitioner][&patient][&location][&status][&_count]`:
/// a provider's day or week, a patient's visits, a location's day.
pub(crate) async fn appointment_search(
    State(st): State<AppState>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
    RawQuery(q): RawQuery,
) -> FhirResult {
    let params = only_params(q.as_deref(), &accepted_params("Appointment"))?;
    let found = st.vault.search_appointments(&actor, p, &params).await?;
    Ok(fhir_json(StatusCode::OK, &searchset(&base_url(&st), found.iter().map(|a| a.to_fhir()).collect())))
}

/// The `patient` parameter of a chart search (required).
fn patient_param(q: Option<&str>, kind: &str) -> Result<String, InputError> {
    let params = only_params(q, &accepted_params(kind))?;
    let Some((_, v)) = params.first() else {
        return Err(InputError::new(IssueCode::Required, Some("patient".to_string()), "patient is required"));
    };
    Ok(v.strip_prefix("Patient/").unwrap_or(v).to_string())
}

/// `GET /fhir/r4/Encounter/{id}`.
pub(crate) async fn encounter_read(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
) -> FhirResult {
    Ok(fhir_json(StatusCode::OK, &st.vault.read_encounter(&actor, p, &id).await?.to_fhir()))
}

/// `GET /fhir/r4/Encounter?patient=`.
pub(crate) async fn encounter_search(
    State(st): State<AppState>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
    RawQuery(q): RawQuery,
) -> FhirResult {
    let patient = patient_param(q.as_deref(), "Encounter")?;
    let list = st.vault.patient_encounters(&actor, p, &patient).await?;
    Ok(fhir_json(StatusCode::OK, &searchset(&base_url(&st), list.iter().map(|r| r.to_fhir()).collect())))
}

/// `GET /fhir/r4/Condition?patient=`.
pub(crate) async fn condition_search(
    State(st): State<AppState>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
    RawQuery(q): RawQuery,
) -> FhirResult {
    let patient = patient_param(q.as_deref(), "Condition")?;
    let list = st.vault.patient_conditions(&actor, p, &patient).await?;
    Ok(fhir_json(StatusCode::OK, &searchset(&base_url(&st), list.iter().map(|r| r.to_fhir()).collect())))
}

/// `GET /fhir/r4/DocumentReference/{id}`: a note, an addendum or an attached document.
pub(crate) async fn document_reference_read(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
) -> FhirResult {
    let rec = st.vault.read_document_reference(&actor, p, &id).await?;
    let body = if rec.kind == "document" { rec.document_to_fhir() } else { rec.to_fhir() };
    Ok(fhir_json(StatusCode::OK, &body))
}

/// `GET /fhir/r4/DocumentReference?patient=`: notes, addenda and attached documents.
pub(crate) async fn document_reference_search(
    State(st): State<AppState>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
    RawQuery(q): RawQuery,
) -> FhirResult {
    let patient = patient_param(q.as_deref(), "DocumentReference")?;
    let mut found: Vec<Value> = st.vault.patient_notes(&actor, p, &patient).await?.iter().map(|r| r.to_fhir()).collect();
    found.extend(st.vault.patient_documents(&actor, p, &patient).await?.iter().map(|r| r.document_to_fhir()));
    Ok(fhir_json(StatusCode::OK, &searchset(&base_url(&st), found)))
}

/// `GET /fhir/r4/Provenance?target=DocumentReference/{id}`: the signatures of a note.
pub(crate) async fn provenance_search(
    State(st): State<AppState>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
    RawQuery(q): RawQuery,
) -> FhirResult {
    let params = only_params(q.as_deref(), &accepted_params("Provenance"))?;
    let Some((_, target)) = params.first() else {
        return Err(InputError::new(IssueCode::Required, Some("target".to_string()), "target is required").into());
    };
    let id = target.strip_prefix("DocumentReference/").unwrap_or(target);
    let (note, addenda) = st.vault.read_note(&actor, p, id).await?;
    let found = std::iter::once(&note).chain(addenda.iter()).filter_map(|r| r.provenance()).collect();
    Ok(fhir_json(StatusCode::OK, &searchset(&base_url(&st), found)))
}

/// `GET /fhir/r4/Binary/{id}`: a document's content, audited as an export. With
/// `Accept: application/fhir+json` a Binary resource; otherwise the bytes with their type.
pub(crate) async fn binary_read(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
) -> FhirResult {
    use base64::Engine;
    let d = st.vault.download_document(&actor, p, &id).await?;
    let wants_json = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("fhir+json"));
    if wants_json {
        let b = json!({"resourceType": "Binary", "id": id, "contentType": d.content_type,
            "data": base64::engine::general_purpose::STANDARD.encode(d.content.as_slice())});
        return Ok(fhir_json(StatusCode::OK, &b));
    }
    let mut r = axum::response::Response::new(axum::body::Body::from(d.content.to_vec()));
    if let Ok(v) = HeaderValue::from_str(&d.content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r.headers_mut().insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// `GET /fhir/r4/Consent?patient=`.
pub(crate) async fn consent_search(
    State(st): State<AppState>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
    RawQuery(q): RawQuery,
) -> FhirResult {
    let patient = patient_param(q.as_deref(), "Consent")?;
    let list = st.vault.patient_consents(&actor, p, &patient).await?;
    let found = list.iter().map(|c| carevault_core::consent_to_fhir(c, &patient)).collect();
    Ok(fhir_json(StatusCode::OK, &searchset(&base_url(&st), found)))
}

/// `GET /fhir/r4/Consent/{id}/$pdf`: the signed consent as PDF.
pub(crate) async fn consent_pdf(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Authed { actor, purpose: p, .. }: Purposed<Fhir>,
) -> FhirResult {
    let pdf = st.vault.consent_pdf(&actor, p, &id).await?;
    let mut r = axum::response::Response::new(axum::body::Body::from(pdf));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/pdf"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}
