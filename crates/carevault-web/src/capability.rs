//! The FHIR REST surface as one table: every resource type, its interactions (each bound to the
//! handler that serves it) and its search parameters. The router's FHIR routes are built from
//! this table and the CapabilityStatement (`/fhir/r4/metadata`) is rendered from it, so what the
//! statement declares and what the server serves cannot drift apart.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;
use serde_json::{json, Value};

use crate::error::fhir_json;
use crate::fhir;
use crate::server::AppState;

/// What a route does, in CapabilityStatement terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A FHIR RESTful interaction (`read`, `vread`, `update`, `history-instance`, `create`,
    /// `search-type`).
    Interaction(&'static str),
    /// An instance-level operation (`$pdf`): its name, without the `$`.
    Operation(&'static str),
}

/// A search parameter: name, FHIR type, the HL7 definition when it is a standard one, and what
/// this server does with it.
pub(crate) struct Param {
    pub name: &'static str,
    pub kind: &'static str,
    pub definition: Option<&'static str>,
    pub doc: &'static str,
}

/// One resource type as served.
pub(crate) struct Resource {
    pub kind: &'static str,
    pub doc: &'static str,
    pub search: &'static [Param],
    /// Result parameters accepted besides the search parameters (`_count`…).
    pub results: &'static [&'static str],
    /// Resources kept in versions (vread, history).
    pub versioned: bool,
}

/// One route: a resource type, what it does, the method and path under `/fhir/r4`, and the
/// handler.
pub(crate) struct Route {
    pub resource: &'static str,
    pub kind: Kind,
    pub method: Method,
    pub path: &'static str,
    handler: MethodRouter<AppState>,
}

fn route<H, T>(resource: &'static str, kind: Kind, method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = if method == Method::POST {
        MethodFilter::POST
    } else if method == Method::PUT {
        MethodFilter::PUT
    } else {
        MethodFilter::GET
    };
    Route { resource, kind, method, path, handler: axum::routing::on(filter, handler) }
}

const fn p(name: &'static str, kind: &'static str, definition: Option<&'static str>, doc: &'static str) -> Param {
    Param { name, kind, definition, doc }
}

const PATIENT_REF_OPTIONAL: Param =
    p("patient", "reference", Some("http://hl7.org/fhir/SearchParameter/Appointment-patient"), "Patient/{id} or {id}");
const PATIENT_REF: Param =
    p("patient", "reference", Some("http://hl7.org/fhir/SearchParameter/clinical-patient"), "Patient/{id} or {id}; required");

/// Every resource type served, with its search parameters.
pub(crate) const RESOURCES: &[Resource] = &[
    Resource {
        kind: "Patient",
        doc: "Demographics, versioned; search by blind index (no plaintext in the database).",
        search: &[
            p(
                "name",
                "string",
                Some("http://hl7.org/fhir/SearchParameter/Patient-name"),
                "Starts with (3+ letters) or whole word, case- and accent-insensitive, any name part; :exact supported",
            ),
            p(
                "family",
                "string",
                Some("http://hl7.org/fhir/SearchParameter/individual-family"),
                "Starts with (3+ letters) or whole word; :exact supported",
            ),
            p(
                "given",
                "string",
                Some("http://hl7.org/fhir/SearchParameter/individual-given"),
                "Starts with (3+ letters) or whole word; :exact supported",
            ),
            p("birthdate", "date", Some("http://hl7.org/fhir/SearchParameter/individual-birthdate"), "Exact day, month or year (eq only)"),
            p("identifier", "token", Some("http://hl7.org/fhir/SearchParameter/Patient-identifier"), "value or system|value"),
            p("phone", "token", Some("http://hl7.org/fhir/SearchParameter/individual-phone"), "Digits of the number"),
        ],
        results: &["_count", "_offset", "_format"],
        versioned: true,
    },
    Resource {
        kind: "AllergyIntolerance",
        doc: "Clinical data: needs a care relationship with the patient.",
        search: &[PATIENT_REF],
        results: &[],
        versioned: false,
    },
    Resource {
        kind: "Practitioner",
        doc: "The practice directory.",
        search: &[p(
            "identifier",
            "token",
            Some("http://hl7.org/fhir/SearchParameter/Practitioner-identifier"),
            "NPI, as value or system|value",
        )],
        results: &[],
        versioned: false,
    },
    Resource {
        kind: "PractitionerRole",
        doc: "Where and as what each practitioner works.",
        search: &[p(
            "practitioner",
            "reference",
            Some("http://hl7.org/fhir/SearchParameter/PractitionerRole-practitioner"),
            "Practitioner/{id} or {id}",
        )],
        results: &[],
        versioned: false,
    },
    Resource { kind: "Organization", doc: "Organizations of the practice.", search: &[], results: &[], versioned: false },
    Resource { kind: "Location", doc: "Locations and rooms, with their time zone.", search: &[], results: &[], versioned: false },
    Resource {
        kind: "Schedule",
        doc: "A practitioner's schedule at a location; its id is {practitioner}.{location}.",
        search: &[],
        results: &[],
        versioned: false,
    },
    Resource {
        kind: "Slot",
        doc: "Free slots of one local day, computed from availability, closures and bookings.",
        search: &[
            p(
                "schedule",
                "reference",
                Some("http://hl7.org/fhir/SearchParameter/Slot-schedule"),
                "Schedule/{practitioner}.{location}; required",
            ),
            p("start", "date", Some("http://hl7.org/fhir/SearchParameter/Slot-start"), "The local day (YYYY-MM-DD); required"),
            p("duration", "number", None, "Slot length in whole minutes (default 30); carevault-specific"),
        ],
        results: &[],
        versioned: false,
    },
    Resource {
        kind: "Appointment",
        doc: "Booking checks the slot inside the write transaction: no double booking.",
        search: &[
            p(
                "date",
                "date",
                Some("http://hl7.org/fhir/SearchParameter/clinical-date"),
                "ge and lt bounds, e.g. date=ge2026-01-05&date=lt2026-01-12",
            ),
            p(
                "practitioner",
                "reference",
                Some("http://hl7.org/fhir/SearchParameter/Appointment-practitioner"),
                "Practitioner/{id} or {id}",
            ),
            PATIENT_REF_OPTIONAL,
            p("location", "reference", Some("http://hl7.org/fhir/SearchParameter/Appointment-location"), "Location/{id} or {id}"),
            p(
                "status",
                "token",
                Some("http://hl7.org/fhir/SearchParameter/Appointment-status"),
                "booked, arrived, fulfilled, cancelled, noshow",
            ),
        ],
        results: &["_count"],
        versioned: false,
    },
    Resource { kind: "Encounter", doc: "Visits.", search: &[PATIENT_REF], results: &[], versioned: false },
    Resource { kind: "Condition", doc: "Diagnoses (ICD-10-CM).", search: &[PATIENT_REF], results: &[], versioned: false },
    Resource {
        kind: "DocumentReference",
        doc: "Notes (draft, signed, co-signed), addenda and attached documents.",
        search: &[PATIENT_REF],
        results: &[],
        versioned: false,
    },
    Resource {
        kind: "Provenance",
        doc: "The signatures of a note.",
        search: &[p(
            "target",
            "reference",
            Some("http://hl7.org/fhir/SearchParameter/Provenance-target"),
            "DocumentReference/{id}; required",
        )],
        results: &[],
        versioned: false,
    },
    Resource {
        kind: "Binary",
        doc: "A document's content, audited as an export; with Accept: application/fhir+json a Binary resource, else the bytes.",
        search: &[],
        results: &[],
        versioned: false,
    },
    Resource {
        kind: "Consent",
        doc: "Signed consents; $pdf returns the signed document as PDF.",
        search: &[PATIENT_REF],
        results: &[],
        versioned: false,
    },
];

/// Every FHIR route but `/metadata`, bound to its handler.
pub(crate) fn routes() -> Vec<Route> {
    use Kind::{Interaction as I, Operation as Op};
    const GET: Method = Method::GET;
    const POST: Method = Method::POST;
    const PUT: Method = Method::PUT;
    vec![
        route("Patient", I("create"), POST, "/Patient", fhir::create),
        route("Patient", I("search-type"), GET, "/Patient", fhir::search),
        route("Patient", I("search-type"), POST, "/Patient/_search", fhir::search_post),
        route("Patient", I("read"), GET, "/Patient/{id}", fhir::read),
        route("Patient", I("update"), PUT, "/Patient/{id}", fhir::update),
        route("Patient", I("history-instance"), GET, "/Patient/{id}/_history", fhir::history),
        route("Patient", I("vread"), GET, "/Patient/{id}/_history/{vid}", fhir::vread),
        route("AllergyIntolerance", I("create"), POST, "/AllergyIntolerance", fhir::allergy_create),
        route("AllergyIntolerance", I("search-type"), GET, "/AllergyIntolerance", fhir::allergy_search),
        route("AllergyIntolerance", I("read"), GET, "/AllergyIntolerance/{id}", fhir::allergy_read),
        route("Practitioner", I("search-type"), GET, "/Practitioner", fhir::practitioner_search),
        route("Practitioner", I("read"), GET, "/Practitioner/{id}", fhir::practitioner_read),
        route("PractitionerRole", I("search-type"), GET, "/PractitionerRole", fhir::practitioner_role_search),
        route("Organization", I("read"), GET, "/Organization/{id}", fhir::organization_read),
        route("Location", I("read"), GET, "/Location/{id}", fhir::location_read),
        route("Schedule", I("read"), GET, "/Schedule/{id}", fhir::schedule_read),
        route("Slot", I("search-type"), GET, "/Slot", fhir::slot_search),
        route("Appointment", I("create"), POST, "/Appointment", fhir::appointment_create),
        route("Appointment", I("search-type"), GET, "/Appointment", fhir::appointment_search),
        route("Appointment", I("read"), GET, "/Appointment/{id}", fhir::appointment_read),
        route("Encounter", I("search-type"), GET, "/Encounter", fhir::encounter_search),
        route("Encounter", I("read"), GET, "/Encounter/{id}", fhir::encounter_read),
        route("Condition", I("search-type"), GET, "/Condition", fhir::condition_search),
        route("DocumentReference", I("search-type"), GET, "/DocumentReference", fhir::document_reference_search),
        route("DocumentReference", I("read"), GET, "/DocumentReference/{id}", fhir::document_reference_read),
        route("Provenance", I("search-type"), GET, "/Provenance", fhir::provenance_search),
        route("Binary", I("read"), GET, "/Binary/{id}", fhir::binary_read),
        route("Consent", I("search-type"), GET, "/Consent", fhir::consent_search),
        route("Consent", Op("pdf"), GET, "/Consent/{id}/$pdf", fhir::consent_pdf),
    ]
}

/// The FHIR router: `/metadata` and every route of the table (one method router per path).
pub(crate) fn router() -> Router<AppState> {
    let mut by_path: BTreeMap<&'static str, MethodRouter<AppState>> = BTreeMap::new();
    let mut router_extra: Vec<(String, MethodRouter<AppState>)> = Vec::new();
    for r in routes() {
        let merged = match by_path.remove(r.path) {
            Some(m) => m.merge(r.handler),
            None => r.handler,
        };
        by_path.insert(r.path, merged);
    }
    // `/{T}/_history` (history-type) is not served: without its own route it would reach the
    // read route as an id and answer as a read would.
    for res in RESOURCES {
        let history = format!("/{}/_history", res.kind);
        if by_path.keys().any(|p| p.starts_with(&format!("/{}/{{id}}", res.kind))) && !by_path.contains_key(history.as_str()) {
            router_extra.push((history, axum::routing::any(fhir::fallback)));
        }
    }
    let mut router = Router::new().route("/metadata", axum::routing::get(metadata));
    for (path, m) in router_extra {
        router = router.route(&path, m);
    }
    for (path, m) in by_path {
        router = router.route(path, m);
    }
    router.fallback(fhir::fallback)
}

/// The declared search parameter names and result parameters of a resource type (what its
/// search handler accepts).
pub(crate) fn accepted_params(kind: &str) -> Vec<&'static str> {
    RESOURCES.iter().filter(|r| r.kind == kind).flat_map(|r| r.search.iter().map(|p| p.name).chain(r.results.iter().copied())).collect()
}

/// The path part of the base URL (`/fhir/r4`).
fn base_path(base: &str) -> &str {
    base.strip_prefix("https://").and_then(|r| r.find('/').map(|i| &r[i..])).unwrap_or("/fhir/r4")
}

/// The CapabilityStatement, rendered from the table.
pub(crate) fn statement(base: &str, started_at: i64) -> Value {
    let routes = routes();
    let resources: Vec<Value> = RESOURCES
        .iter()
        .map(|res| {
            // Each interaction with the requests that perform it ("GET /fhir/r4/Patient/{id}").
            let mut interactions: Vec<(&'static str, Vec<String>)> = Vec::new();
            let mut operations: Vec<&'static str> = Vec::new();
            for r in routes.iter().filter(|r| r.resource == res.kind) {
                match r.kind {
                    Kind::Interaction(code) => {
                        let how = format!("{} {}{}", r.method, base_path(base), r.path);
                        match interactions.iter_mut().find(|(c, _)| *c == code) {
                            Some((_, hows)) => hows.push(how),
                            None => interactions.push((code, vec![how])),
                        }
                    }
                    Kind::Operation(name) if !operations.contains(&name) => operations.push(name),
                    Kind::Operation(_) => {}
                }
            }
            let has = |code: &str| interactions.iter().any(|(c, _)| *c == code);
            let mut v = json!({
                "type": res.kind,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{}", res.kind),
                "documentation": res.doc,
                "interaction": interactions.iter().map(|(c, hows)| json!({"code": c, "documentation": hows.join("; ")})).collect::<Vec<_>>(),
                "versioning": if res.versioned { "versioned-update" } else { "no-version" },
                "readHistory": res.versioned && has("vread"),
                "updateCreate": false,
                "conditionalCreate": false,
                "conditionalRead": "not-supported",
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
            });
            if !res.search.is_empty() {
                v["searchParam"] = res
                    .search
                    .iter()
                    .map(|p| {
                        let mut s = json!({"name": p.name, "type": p.kind, "documentation": p.doc});
                        if let Some(d) = p.definition {
                            s["definition"] = json!(d);
                        }
                        s
                    })
                    .collect();
            }
            if !operations.is_empty() {
                v["operation"] = operations
                    .iter()
                    .map(|o| {
                        json!({"name": o, "definition": format!("urn:carevault:OperationDefinition:{}-{o}", res.kind),
                            "documentation": format!("GET {}/{}/{{id}}/${o}", base, res.kind)})
                    })
                    .collect();
            }
            v
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": carevault_core::format_instant(started_at),
        "publisher": "carevault",
        "kind": "instance",
        "software": {"name": "carevault", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "carevault clinic server", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Every read, search and change is authorized, audited and encrypted at rest. Name the purpose of use in the X-Purpose-Of-Use header (HL7 v3 PurposeOfUse code).",
            "security": {
                "cors": false,
                "description": "Staff sign in at /api/v1/auth/login and /api/v1/auth/mfa/totp; the session is a Secure, HttpOnly, SameSite=Strict cookie."
            },
            "resource": resources,
        }]
    })
}

/// `GET /fhir/r4/metadata`: public, no session needed.
pub(crate) async fn metadata(State(st): State<AppState>) -> Response {
    let base = format!("{}/fhir/r4", st.public_origin);
    fhir_json(StatusCode::OK, &statement(&base, st.started_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route names a resource of the table, every resource has a route, no path and
    /// method is served twice, and each search handler's accepted parameters are the table's.
    #[test]
    fn the_table_is_consistent() {
        let routes = routes();
        for r in &routes {
            assert!(RESOURCES.iter().any(|res| res.kind == r.resource), "{} has no entry in RESOURCES", r.resource);
            assert!(r.path.starts_with(&format!("/{}", r.resource)), "{} {}", r.method, r.path);
        }
        for res in RESOURCES {
            assert!(routes.iter().any(|r| r.resource == res.kind), "{} is declared but not routed", res.kind);
            let searchable = routes.iter().any(|r| r.resource == res.kind && r.kind == Kind::Interaction("search-type"));
            assert_eq!(searchable, !res.search.is_empty(), "{}: search parameters iff a search route", res.kind);
        }
        let mut seen = std::collections::HashSet::new();
        for r in &routes {
            assert!(seen.insert((r.method.clone(), r.path)), "{} {} twice", r.method, r.path);
        }
        // Patient's search parser knows exactly the declared names.
        let mut declared = accepted_params("Patient");
        let mut parser = carevault_domain::search::PATIENT_PARAMS.to_vec();
        declared.sort_unstable();
        parser.sort_unstable();
        assert_eq!(declared, parser);
        // The statement lists every routed interaction.
        let cs = statement("https://x/fhir/r4", 0);
        let listed = cs["rest"][0]["resource"].as_array().expect("resources");
        for r in &routes {
            let res = listed.iter().find(|v| v["type"] == r.resource).expect("listed");
            match r.kind {
                Kind::Interaction(code) => assert!(res["interaction"].as_array().expect("i").iter().any(|i| i["code"] == code)),
                Kind::Operation(name) => assert!(res["operation"].as_array().expect("o").iter().any(|o| o["name"] == name)),
            }
        }
    }
}
