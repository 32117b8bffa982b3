//! The HTTPS server end to end (real TLS, real HTTP client), on SQLite or PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the test failing

use carevault_core::Clock;
use carevault_domain::Role;
use carevault_testkit::{App, PASSWORD};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn patient(family: &str, given: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "name": [{"use": "official", "family": family, "given": [given]}],
        "birthDate": "1958-11-02",
        "gender": "male",
        "telecom": [{"system": "phone", "value": "+1 555 010 2233"}]
    })
}

async fn counts(app: &App) -> (i64, i64) {
    use sqlx::Row;
    let mut c = app.tv.raw().await.expect("raw");
    let a: i64 = sqlx::query("SELECT COUNT(*) FROM audit_events").fetch_one(&mut c).await.expect("a").get(0);
    let p: i64 = sqlx::query("SELECT COUNT(*) FROM patient_versions").fetch_one(&mut c).await.expect("p").get(0);
    (a, p)
}

async fn is_operation_outcome(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let body: Value = r.json().await.expect("json body");
    assert!(ct.starts_with("application/fhir+json"), "{ct}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    (status, body)
}

#[tokio::test]
async fn security_headers_cookie_and_sign_in_flow() {
    let app = App::spawn().await.expect("app");
    let staff = app.add_staff(Role::Physician).await.expect("staff");
    let c = app.client().expect("client");
    let r = c.get(app.url("/fhir/r4/metadata")).send().await.expect("metadata");
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["strict-transport-security"], "max-age=63072000; includeSubDomains");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "same-origin");
    assert_eq!(h["cache-control"], "no-store");
    assert!(h["content-security-policy"].to_str().expect("csp").contains("frame-ancestors 'none'"));
    assert!(h["permissions-policy"].to_str().expect("pp").contains("publickey-credentials-get=(self)"));
    let cs: Value = r.json().await.expect("json");
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");

    let r =
        c.post(app.url("/api/v1/auth/login")).json(&json!({"username": staff.username, "password": PASSWORD})).send().await.expect("login");
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().expect("cookie").to_string();
    for attr in ["__Host-carevault_session=", "Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    // MFA pending: no PHI, no session info.
    let r = c.get(app.url("/fhir/r4/Patient?family=abc")).send().await.expect("pending");
    assert_eq!(is_operation_outcome(r).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(c.get(app.url("/api/v1/auth/session")).send().await.expect("s").status(), 401);
    let code = staff.code_at(app.tv.clock.now_secs());
    let r = c.post(app.url("/api/v1/auth/mfa/totp")).json(&json!({"code": code})).send().await.expect("mfa");
    assert_eq!(r.status(), 200);
    let cookie2 = r.headers()["set-cookie"].to_str().expect("cookie").to_string();
    assert_ne!(cookie, cookie2, "a new token after authentication");
    let who: Value = c.get(app.url("/api/v1/auth/session")).send().await.expect("s").json().await.expect("json");
    assert_eq!(who["user"]["roles"], json!(["physician"]));
    assert!(who["permissions"].as_array().expect("permissions").iter().any(|p| p == "clinical.allergy.read"));

    // The same code again, in a fresh sign-in: refused.
    let c2 = app.client().expect("client");
    c2.post(app.url("/api/v1/auth/login")).json(&json!({"username": staff.username, "password": PASSWORD})).send().await.expect("login");
    let r = c2.post(app.url("/api/v1/auth/mfa/totp")).json(&json!({"code": code})).send().await.expect("replay");
    assert_eq!(r.status(), 401);
    let p: Value = r.json().await.expect("problem");
    assert_eq!(p["code"], "CV-AUTHN-005");

    // A state-changing request from another origin is refused.
    let r = c
        .post(app.url("/fhir/r4/Patient"))
        .header("origin", "https://evil.example")
        .header("content-type", "application/fhir+json")
        .body(patient("Cross", "Origin").to_string())
        .send()
        .await
        .expect("cross-origin");
    assert_eq!(is_operation_outcome(r).await.0, StatusCode::FORBIDDEN);

    let r = c.post(app.url("/api/v1/auth/logout")).send().await.expect("logout");
    assert_eq!(r.status(), 204);
    assert!(r.headers()["clear-site-data"].to_str().expect("csd").contains("cookies"));
    assert_eq!(c.get(app.url("/api/v1/auth/session")).send().await.expect("s").status(), 401);
}

#[tokio::test]
async fn unauthenticated_requests_reach_no_phi_and_are_audited() {
    let app = App::spawn().await.expect("app");
    let (clin, _) = app.signed_in(Role::Physician).await.expect("clin");
    let r = clin
        .post(app.url("/fhir/r4/Patient"))
        .header("content-type", "application/fhir+json")
        .body(patient("Hidden", "Person").to_string())
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    let anon = app.client().expect("client");
    let routes: Vec<(&str, String)> = vec![
        ("GET", format!("/fhir/r4/Patient/{id}")),
        ("GET", format!("/fhir/r4/Patient/{id}/_history")),
        ("GET", format!("/fhir/r4/Patient/{id}/_history/1")),
        ("GET", "/fhir/r4/Patient?family=hidden".to_string()),
        ("POST", "/fhir/r4/Patient".to_string()),
        ("PUT", format!("/fhir/r4/Patient/{id}")),
        ("POST", "/fhir/r4/Patient/_search".to_string()),
    ];
    let (a0, _) = counts(&app).await;
    for (method, path) in &routes {
        let rb = match *method {
            "GET" => anon.get(app.url(path)),
            "POST" => anon.post(app.url(path)),
            _ => anon.put(app.url(path)),
        };
        let r = rb.header("content-type", "application/fhir+json").body(patient("X", "Y").to_string()).send().await.expect("send");
        let (status, body) = is_operation_outcome(r).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(!body.to_string().contains("Hidden"));
    }
    // The first refusal of the address's window is audited at once; the others are counted and
    // written as one record when the window ends (front_door.rs has the details).
    let (a1, _) = counts(&app).await;
    assert_eq!(a1 - a0, 1, "the window's first refusal is audited");
    app.tv.clock.advance_secs(61);
    let want = format!("refusals:{}", routes.len() - 1);
    for _ in 0..100 {
        use sqlx::Row;
        let mut c = app.tv.raw().await.expect("raw");
        let marks: Vec<Option<String>> = sqlx::query("SELECT review_flags FROM audit_events WHERE action = 'access-denied' ORDER BY seq")
            .fetch_all(&mut c)
            .await
            .expect("rows")
            .iter()
            .map(|r| r.get(0))
            .collect();
        if marks.iter().any(|m| m.as_deref() == Some(want.as_str())) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no record counts the other {} refusals", routes.len() - 1);
}

/// route × role → status. A route added to the server must be added here.
#[tokio::test]
async fn authorization_matrix_over_http() {
    let app = App::spawn().await.expect("app");
    let (fd, _) = app.signed_in(Role::FrontDesk).await.expect("fd");
    let (clin, _) = app.signed_in(Role::Physician).await.expect("clin");
    let (admin, _) = app.signed_in(Role::PracticeAdmin).await.expect("admin");
    let created: Value = fd
        .post(app.url("/fhir/r4/Patient"))
        .header("content-type", "application/fhir+json")
        .body(patient("Matrix", "Mia").to_string())
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    let mut upd = created.clone();
    upd["gender"] = json!("female");
    // (method, path, [front_desk, clinician, admin])
    let table: Vec<(&str, String, [u16; 3])> = vec![
        ("GET", "/fhir/r4/metadata".into(), [200, 200, 200]),
        ("GET", format!("/fhir/r4/Patient/{id}"), [200, 200, 403]),
        ("GET", format!("/fhir/r4/Patient/{id}/_history"), [403, 200, 403]),
        ("GET", format!("/fhir/r4/Patient/{id}/_history/1"), [403, 200, 403]),
        ("GET", "/fhir/r4/Patient?family=matrix".into(), [200, 200, 403]),
        ("POST", "/fhir/r4/Patient/_search".into(), [200, 200, 403]),
        ("POST", "/fhir/r4/Patient".into(), [201, 201, 403]),
        ("PUT", format!("/fhir/r4/Patient/{id}"), [200, 200, 403]),
        ("GET", "/api/v1/auth/session".into(), [200, 200, 200]),
        ("GET", "/api/v1/health".into(), [204, 204, 204]),
    ];
    for (method, path, expect) in &table {
        for (i, c) in [&fd, &clin, &admin].iter().enumerate() {
            let rb = match *method {
                "GET" => c.get(app.url(path)),
                "PUT" => c.put(app.url(path)).header("content-type", "application/fhir+json").body(upd.to_string()),
                _ if path.ends_with("_search") => {
                    c.post(app.url(path)).header("content-type", "application/x-www-form-urlencoded").body("family=matrix")
                }
                _ => c.post(app.url(path)).header("content-type", "application/fhir+json").body(patient("Matrix", "Max").to_string()),
            };
            let status = rb.send().await.expect("send").status().as_u16();
            assert_eq!(status, expect[i], "{method} {path} as role #{i}");
        }
    }
}

#[tokio::test]
async fn fhir_patient_lifecycle_with_history_and_paging() {
    let app = App::spawn().await.expect("app");
    let (c, _) = app.signed_in(Role::Physician).await.expect("clin");
    let mut ids = Vec::new();
    for i in 0..7 {
        let r = c
            .post(app.url("/fhir/r4/Patient"))
            .header("content-type", "application/fhir+json")
            .body(patient("Pagewright", &format!("Kid{}", "o".repeat(i))).to_string())
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 201);
        let loc = r.headers()["location"].to_str().expect("loc").to_string();
        assert_eq!(r.headers()["etag"], "W/\"1\"");
        let body: Value = r.json().await.expect("json");
        assert!(loc.ends_with(&format!("/Patient/{}/_history/1", body["id"].as_str().expect("id"))));
        ids.push(body);
    }
    // Update with If-Match, then a stale If-Match.
    let mut p = ids[0].clone();
    let id = p["id"].as_str().expect("id").to_string();
    p["telecom"] = json!([{"system": "email", "value": "kid@example.org"}]);
    let r = c
        .put(app.url(&format!("/fhir/r4/Patient/{id}")))
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"")
        .body(p.to_string())
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "W/\"2\"");
    let r = c
        .put(app.url(&format!("/fhir/r4/Patient/{id}")))
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"")
        .body(p.to_string())
        .send()
        .await
        .expect("stale");
    assert_eq!(is_operation_outcome(r).await.0, StatusCode::PRECONDITION_FAILED);
    // Dropping the MRN is refused.
    let mut no_mrn = p.clone();
    no_mrn["identifier"] = json!([]);
    let r = c
        .put(app.url(&format!("/fhir/r4/Patient/{id}")))
        .header("content-type", "application/fhir+json")
        .body(no_mrn.to_string())
        .send()
        .await
        .expect("no mrn");
    assert_eq!(is_operation_outcome(r).await.0, StatusCode::BAD_REQUEST);
    let h: Value = c.get(app.url(&format!("/fhir/r4/Patient/{id}/_history"))).send().await.expect("history").json().await.expect("json");
    assert_eq!(h["type"], "history");
    assert_eq!(h["total"], 2);
    assert_eq!(h["entry"][0]["resource"]["meta"]["versionId"], "2");
    let v1: Value = c.get(app.url(&format!("/fhir/r4/Patient/{id}/_history/1"))).send().await.expect("vread").json().await.expect("json");
    assert!(v1.get("telecom").is_some_and(|t| t[0]["system"] == "phone"));
    // Page through all seven with _count=3 following the next links.
    let mut url = app.url("/fhir/r4/Patient?family=pagew&_count=3");
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let b: Value = c.get(&url).send().await.expect("page").json().await.expect("json");
        assert_eq!(b["type"], "searchset");
        assert_eq!(b["total"], 7);
        for e in b["entry"].as_array().expect("entries") {
            seen.push(e["resource"]["id"].as_str().expect("id").to_string());
            assert_eq!(e["search"]["mode"], "match");
        }
        pages += 1;
        match b["link"].as_array().expect("links").iter().find(|l| l["relation"] == "next") {
            Some(l) => url = l["url"].as_str().expect("url").to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 7);
    // Search by POST keeps the terms out of the URL.
    let b: Value = c
        .post(app.url("/fhir/r4/Patient/_search"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("given=kidooo&birthdate=1958-11-02")
        .send()
        .await
        .expect("post search")
        .json()
        .await
        .expect("json");
    assert_eq!(b["total"], 4, "{b}");
}

#[tokio::test]
async fn bad_input_gets_a_precise_operation_outcome_an_audit_record_and_no_write() {
    let app = App::spawn_with(carevault_testkit::test_config(), 64 * 1024).await.expect("app");
    let (c, _) = app.signed_in(Role::FrontDesk).await.expect("fd");
    let fhir = "application/fhir+json";
    let big = json!({"resourceType": "Patient", "name": [{"family": "Big"}], "address": [{"text": "a".repeat(70 * 1024)}]}).to_string();
    type Case = (&'static str, &'static str, Vec<u8>, &'static str, u16, &'static str);
    let cases: Vec<Case> = vec![
        ("malformed JSON", "/fhir/r4/Patient", b"{\"resourceType\": \"Patient\", ".to_vec(), fhir, 400, "malformed JSON"),
        ("wrong resourceType", "/fhir/r4/Patient", br#"{"resourceType":"Observation"}"#.to_vec(), fhir, 400, "resourceType"),
        (
            "invalid date",
            "/fhir/r4/Patient",
            br#"{"resourceType":"Patient","name":[{"family":"X"}],"birthDate":"1980-02-30"}"#.to_vec(),
            fhir,
            400,
            "birthDate",
        ),
        (
            "script",
            "/fhir/r4/Patient",
            br#"{"resourceType":"Patient","name":[{"family":"<script>alert(1)</script>"}]}"#.to_vec(),
            fhir,
            400,
            "Patient.name[0].family",
        ),
        (
            "sql",
            "/fhir/r4/Patient",
            br#"{"resourceType":"Patient","name":[{"family":"Robert'); DROP TABLE patients;--"}]}"#.to_vec(),
            fhir,
            400,
            "Patient.name[0].family",
        ),
        (
            "invalid UTF-8",
            "/fhir/r4/Patient",
            b"{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"\xff\xfe\"}]}".to_vec(),
            fhir,
            400,
            "UTF-8",
        ),
        ("too large", "/fhir/r4/Patient", big.into_bytes(), fhir, 413, "limit"),
        ("media type", "/fhir/r4/Patient", b"<Patient/>".to_vec(), "application/xml", 415, "application/fhir+json"),
        (
            "unknown element",
            "/fhir/r4/Patient",
            br#"{"resourceType":"Patient","name":[{"family":"X"}],"photo":[]}"#.to_vec(),
            fhir,
            400,
            "the supported elements are",
        ),
    ];
    for (name, path, body, ct, status, needle) in cases {
        let (a0, p0) = counts(&app).await;
        let r = c.post(app.url(path)).header("content-type", ct).body(body).send().await.expect("send");
        let (s, oo) = is_operation_outcome(r).await;
        assert_eq!(s.as_u16(), status, "{name}: {oo}");
        assert!(oo.to_string().contains(needle), "{name}: {oo}");
        let (a1, p1) = counts(&app).await;
        assert_eq!(a1, a0 + 1, "{name}: one audit record");
        assert_eq!(p1, p0, "{name}: nothing written");
    }
    for q in ["shoe_size=9", "family:contains=abc", "birthdate=gt1980", "birthdate=1980-13-01", "_count=5000", "_sort=family"] {
        let (a0, _) = counts(&app).await;
        let r = c.get(app.url(&format!("/fhir/r4/Patient?{q}"))).send().await.expect("search");
        let (s, _) = is_operation_outcome(r).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(counts(&app).await.0, a0 + 1, "{q}: audited");
    }
    let r = c.get(app.url("/fhir/r4/Patient/does-not-exist")).send().await.expect("404");
    assert_eq!(is_operation_outcome(r).await.0, StatusCode::NOT_FOUND);
    let r = c.get(app.url("/fhir/r4/Observation/1")).send().await.expect("404");
    assert_eq!(is_operation_outcome(r).await.0, StatusCode::NOT_FOUND);
    // The JSON API answers problem+json.
    let r = c.post(app.url("/api/v1/auth/login")).header("content-type", "application/json").body("{").send().await.expect("bad login");
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn idle_timeout_is_enforced_by_the_server() {
    let config = carevault_core::CoreConfig { session_idle_secs: 120, ..carevault_testkit::test_config() };
    let app = App::spawn_with(config, 1 << 20).await.expect("app");
    let (c, _) = app.signed_in(Role::Physician).await.expect("clin");
    assert_eq!(c.get(app.url("/api/v1/auth/session")).send().await.expect("s").status(), 200);
    app.tv.clock.advance_secs(121);
    // No client cooperation: the same cookie, refused by the server.
    let r = c.get(app.url("/fhir/r4/Patient?family=abc")).send().await.expect("expired");
    let (s, oo) = is_operation_outcome(r).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(oo.to_string().contains("CV-AUTHN-002"), "{oo}");
    assert_eq!(c.get(app.url("/api/v1/auth/session")).send().await.expect("s").status(), 401);
}

#[tokio::test]
async fn tls_12_and_13_both_work() {
    let app = App::spawn().await.expect("app");
    for v in [reqwest::tls::Version::TLS_1_2, reqwest::tls::Version::TLS_1_3] {
        let c = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(app.cert_pem.as_bytes()).expect("pem"))
            .resolve("localhost", ([127, 0, 0, 1], 0).into())
            .min_tls_version(v)
            .max_tls_version(v)
            .build()
            .expect("client");
        assert_eq!(c.get(app.url("/api/v1/health")).send().await.expect("tls").status(), 204);
    }
}
