//! The front door (issue 12, part 6): what an outsider can make the server do before signing in.
//! Unauthenticated floods, username enumeration, throttling behind NAT and proxies, links and the
//! origin check that no `Host` header can steer, the generated certificate's lifetime, and error
//! bodies that echo nothing the client sent. On SQLite or PostgreSQL
//! (`CAREVAULT_TEST_DATABASE_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the test failing

use std::time::Duration;

use carevault_core::Clock;
use carevault_domain::Role;
use carevault_testkit::{App, PASSWORD};
use serde_json::{json, Value};

async fn scalar(app: &App, sql: &str) -> i64 {
    use sqlx::Row;
    let mut c = app.tv.raw().await.expect("raw");
    sqlx::query(sql).fetch_one(&mut c).await.expect(sql).get(0)
}

async fn denied_records(app: &App) -> i64 {
    scalar(app, "SELECT COUNT(*) FROM audit_events WHERE action = 'access-denied'").await
}

/// (source address, review marks) of the access-denied records of anonymous callers, in order.
async fn anonymous_denials(app: &App) -> Vec<(Option<String>, Option<String>)> {
    use sqlx::Row;
    let mut c = app.tv.raw().await.expect("raw");
    sqlx::query("SELECT source_ip, review_flags FROM audit_events WHERE action = 'access-denied' AND actor = 'anonymous' ORDER BY seq")
        .fetch_all(&mut c)
        .await
        .expect("rows")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// A client that trusts the server, keeps no cookies and speaks HTTP/1.1 (so a `Host` header
/// of the test's choosing reaches the server as it is).
fn plain_client(app: &App) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(app.cert_pem.as_bytes()).expect("cert");
    reqwest::Client::builder()
        .add_root_certificate(cert)
        .resolve("localhost", ([127, 0, 0, 1], 0).into())
        .http1_only()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn patient(family: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Ada"]}], "birthDate": "1970-01-02", "gender": "female"})
}

/// A flood of requests without a session (FHIR, API and UI routes) costs one audit record per
/// address and window, not one per request; the window's record carries the count, written by
/// the vault's tick once the window has ended, so no refusal goes uncounted.
#[tokio::test]
async fn unauthenticated_refusals_are_audited_once_per_address_and_window() {
    let app = App::spawn().await.expect("app");
    let c = plain_client(&app);
    let before = denied_records(&app).await;
    let paths = ["/fhir/r4/Patient?name=smith", "/api/v1/auth/session", "/ui/", "/fhir/r4/Patient/abc"];
    for i in 0..200 {
        let mut req = c.get(app.url(paths[i % paths.len()]));
        if i % 3 == 0 {
            req = req.header("cookie", format!("__Host-carevault_session=forged{i}"));
        }
        let r = req.send().await.expect("request");
        assert!(matches!(r.status().as_u16(), 401 | 303), "{}", r.status());
    }
    assert_eq!(denied_records(&app).await - before, 1, "200 refusals from one address open one window: one record");

    // When the window has ended, the tick writes one record with the count of the other 199.
    app.tv.clock.advance_secs(61);
    let mut waited = 0;
    while denied_records(&app).await - before < 2 && waited < 100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    assert_eq!(denied_records(&app).await - before, 2);
    let rows = anonymous_denials(&app).await;
    let (ip, marks) = rows.last().expect("the window's record");
    assert_eq!((ip.as_deref(), marks.as_deref()), (Some("127.0.0.1"), Some("refusals:199")), "{rows:?}");

    // A new window opens with a record of its own; a refusal of it is counted, and written at
    // shutdown if the window is still open then.
    c.get(app.url("/fhir/r4/metadata")).send().await.expect("metadata is public");
    for _ in 0..3 {
        assert_eq!(c.get(app.url("/api/v1/auth/session")).send().await.expect("session").status(), 401);
    }
    assert_eq!(denied_records(&app).await - before, 3);
    let tv = app.stop().await;
    tv.vault.shutdown().await;
    let mut raw = tv.raw().await.expect("raw");
    use sqlx::Row;
    let last: Option<String> =
        sqlx::query("SELECT review_flags FROM audit_events WHERE action = 'access-denied' ORDER BY seq DESC LIMIT 1")
            .fetch_one(&mut raw)
            .await
            .expect("last")
            .get(0);
    assert_eq!(last.as_deref(), Some("refusals:2"));
    drop(raw);
    let report =
        carevault_core::verify_audit_at(&tv.data_dir(), tv.backend.vault_url().as_deref(), &Default::default()).await.expect("verify");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
}

async fn records_of(app: &App, action: &str) -> i64 {
    scalar(app, &format!("SELECT COUNT(*) FROM audit_events WHERE action = '{action}'")).await
}

/// The other refusals that cost the caller nothing are counted the same way: a second-factor
/// step without a pending session, and sign-in attempts while throttled or locked.
#[tokio::test]
async fn refusals_before_sign_in_cost_one_record_per_window() {
    let app = App::spawn().await.expect("app");
    let c = plain_client(&app);
    let mfa = records_of(&app, "mfa-failed").await;
    for _ in 0..50 {
        let r = c.post(app.url("/api/v1/auth/mfa/totp")).json(&json!({"code": "123456"})).send().await.expect("totp");
        assert_eq!(r.status(), 401);
    }
    assert_eq!(records_of(&app, "mfa-failed").await - mfa, 1, "50 codes without a pending session: one record");

    let staff = app.add_staff(Role::FrontDesk).await.expect("staff");
    for _ in 0..5 {
        assert_eq!(login(&c, &app, &staff.username, "not the password!").await.0, 401);
    }
    let failed = records_of(&app, "login-failed").await;
    for _ in 0..50 {
        assert_eq!(login(&c, &app, &staff.username, PASSWORD).await.0, 429, "locked, even with the right password");
    }
    assert_eq!(records_of(&app, "login-failed").await - failed, 1, "50 refusals of a throttled sign-in: one record");

    // When the windows end, one record each carries the count of the other 49.
    app.tv.clock.advance_secs(61);
    let want = [("mfa-failed".to_string(), "refusals:49".to_string()), ("login-failed".to_string(), "refusals:49".to_string())];
    for _ in 0..100 {
        let got = marks(&app).await;
        if want.iter().all(|w| got.contains(w)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = marks(&app).await;
    assert!(want.iter().all(|w| got.contains(w)), "{got:?}");
}

/// (action, review marks) of the records that carry marks.
async fn marks(app: &App) -> Vec<(String, String)> {
    use sqlx::Row;
    let mut c = app.tv.raw().await.expect("raw");
    sqlx::query("SELECT action, review_flags FROM audit_events WHERE review_flags IS NOT NULL ORDER BY seq")
        .fetch_all(&mut c)
        .await
        .expect("rows")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn login(c: &reqwest::Client, app: &App, username: &str, password: &str) -> (u16, Option<String>, Value) {
    let r = c.post(app.url("/api/v1/auth/login")).json(&json!({"username": username, "password": password})).send().await.expect("login");
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").map(|v| v.to_str().expect("ascii").to_string());
    (status, retry, r.json().await.expect("problem+json"))
}

/// An existing username and an unknown one get the same answers, attempt after attempt: same
/// statuses, same bodies, same `Retry-After`, the same lock after five failures.
#[tokio::test]
async fn unknown_and_existing_usernames_answer_alike() {
    let app = App::spawn().await.expect("app");
    let staff = app.add_staff(Role::FrontDesk).await.expect("staff");
    let c = plain_client(&app);
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..8 {
        known.push(login(&c, &app, &staff.username, "not the password!").await);
        unknown.push(login(&c, &app, "nobody-by-this-name", "not the password!").await);
    }
    assert!(known.iter().any(|(s, _, _)| *s == 429), "the account locks: {known:?}");
    assert_eq!(known, unknown, "an unknown name must answer exactly as an existing one");
    // The lock ends for both alike, and a wrong password is refused alike again.
    app.tv.clock.advance_secs(3600);
    assert_eq!(login(&c, &app, &staff.username, "still not it!").await, login(&c, &app, "nobody-by-this-name", "still not it!").await);
}

/// One address (a clinic's NAT or proxy): staff mistyping passwords now and then, and one person
/// failing again and again, do not lock everyone else out; the address-wide limit is for
/// spraying across many accounts.
#[tokio::test]
async fn one_person_failing_does_not_lock_out_the_clinic_behind_one_address() {
    let app = App::spawn().await.expect("app");
    let c = plain_client(&app);
    // A morning of typos: twelve people, three each (36 failures, above the old per-address
    // limit of 30).
    let mut people = Vec::new();
    for _ in 0..12 {
        people.push(app.add_staff(Role::FrontDesk).await.expect("staff"));
    }
    for p in &people {
        for _ in 0..3 {
            assert_eq!(login(&c, &app, &p.username, "typo typo typo!").await.0, 401);
        }
    }
    // Someone hammers their own (or a wrong) account name.
    for _ in 0..12 {
        let (s, _, _) = login(&c, &app, "m.jones", "guessing again!").await;
        assert!(s == 401 || s == 429, "{s}");
    }
    assert_eq!(login(&c, &app, "m.jones", "guessing again!").await.0, 429, "the one failing is slowed down");
    // Everyone else behind the address signs in.
    let ok = app.add_staff(Role::Physician).await.expect("staff");
    let fresh = app.client().expect("client");
    app.sign_in(&fresh, &ok).await.expect("a colleague behind the same address signs in");
    let (_, _, _) = login(&c, &app, &people[0].username, PASSWORD).await;
    assert_eq!(login(&c, &app, &people[1].username, PASSWORD).await.0, 200);
}

/// Behind trusted proxies the client is the rightmost untrusted `X-Forwarded-For` hop: audit
/// records name it and throttling counts it, so clients behind one proxy are apart; from an
/// untrusted peer the header is ignored.
#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let config = carevault_core::CoreConfig { ip_failure_limit: 8, ..carevault_testkit::test_config() };
    let trusted = carevault_web::TrustedProxies::parse(["127.0.0.0/8"]).expect("proxies");
    let app = App::spawn_web(config.clone(), |w| w.trusted_proxies = trusted).await.expect("app");
    let c = plain_client(&app);
    let fail = |xff: &'static str, name: String| {
        let c = c.clone();
        let url = app.url("/api/v1/auth/login");
        async move {
            c.post(url)
                .header("x-forwarded-for", xff)
                .json(&json!({"username": name, "password": "wrong wrong wrong"}))
                .send()
                .await
                .expect("login")
                .status()
        }
    };
    // Spraying from 198.51.100.7 (a forged leftmost hop is not believed) reaches the address
    // limit for that client only.
    for i in 0..8 {
        let s = fail("6.6.6.6, 198.51.100.7", format!("spray{i}")).await;
        assert!(s == 401 || s == 429, "{s}");
    }
    assert_eq!(fail("198.51.100.7", "spray-last".into()).await, 429);
    assert_eq!(fail("6.6.6.6", "spray-late".into()).await, 401, "another client behind the proxy is not throttled");
    let ips: Vec<Option<String>> = {
        use sqlx::Row;
        let mut raw = app.tv.raw().await.expect("raw");
        sqlx::query("SELECT source_ip FROM audit_events WHERE action = 'login-failed' ORDER BY seq")
            .fetch_all(&mut raw)
            .await
            .expect("rows")
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    assert!(ips.iter().any(|i| i.as_deref() == Some("198.51.100.7")), "{ips:?}");
    assert!(ips.iter().any(|i| i.as_deref() == Some("6.6.6.6")), "{ips:?}");
    assert!(!ips.iter().any(|i| i.as_deref() == Some("127.0.0.1")), "the proxy is not the client: {ips:?}");
    let r = c.get(app.url("/api/v1/auth/session")).header("x-forwarded-for", "203.0.113.9").send().await.expect("anon");
    assert_eq!(r.status(), 401);
    assert!(anonymous_denials(&app).await.iter().any(|(ip, _)| ip.as_deref() == Some("203.0.113.9")));

    // Without trusted proxies the header is ignored: the TCP peer is the client.
    let plain = App::spawn_with(config, 1024 * 1024).await.expect("app");
    let c = plain_client(&plain);
    let r = c.get(plain.url("/api/v1/auth/session")).header("x-forwarded-for", "203.0.113.9").send().await.expect("anon");
    assert_eq!(r.status(), 401);
    let rows = anonymous_denials(&plain).await;
    assert!(rows.iter().all(|(ip, _)| ip.as_deref() == Some("127.0.0.1")), "{rows:?}");
}

fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").map(|v| v.to_str().expect("ascii").to_string()).unwrap_or_default()
}

/// Links and `Location` headers are built on the public origin (by default the listener's,
/// `https://localhost:PORT`), whatever `Host` the request names.
#[tokio::test]
async fn links_ignore_the_host_header() {
    let app = App::spawn().await.expect("app");
    let (clin, _) = app.signed_in(Role::Physician).await.expect("clinician");
    let origin = app.base.clone();
    for host in ["evil.example", "evil.example:443", &format!("localhost:{}", 1)] {
        let r = clin
            .post(app.url("/fhir/r4/Patient"))
            .header("host", host)
            .header("content-type", "application/fhir+json")
            .body(patient("Hostly").to_string())
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 201);
        let loc = location(&r);
        assert!(loc.starts_with(&format!("{origin}/fhir/r4/Patient/")), "Host {host} steered Location to {loc}");
        let b: Value =
            clin.get(app.url("/fhir/r4/Patient?family=Hostly")).header("host", host).send().await.expect("s").json().await.expect("j");
        for l in b["link"].as_array().expect("links") {
            assert!(l["url"].as_str().expect("url").starts_with(&format!("{origin}/fhir/r4/")), "{l}");
        }
        for e in b["entry"].as_array().expect("entries") {
            assert!(e["fullUrl"].as_str().expect("fullUrl").starts_with(&origin), "{e}");
        }
        let m: Value = clin.get(app.url("/fhir/r4/metadata")).header("host", host).send().await.expect("m").json().await.expect("j");
        assert_eq!(m["implementation"]["url"], format!("{origin}/fhir/r4"));
    }
}

/// A configured public origin shapes links, and a state-changing request whose `Origin` is not
/// it is refused even when it matches the `Host` it was sent to.
#[tokio::test]
async fn a_configured_public_origin_shapes_links_and_the_origin_check() {
    let app = App::spawn_web(carevault_testkit::test_config(), |w| w.public_origin = Some("https://Clinic.Example:8443/".into()))
        .await
        .expect("app");
    let (clin, _) = app.signed_in(Role::Physician).await.expect("clinician");
    let post = |origin: &str| {
        clin.post(app.url("/fhir/r4/Patient"))
            .header("origin", origin.to_string())
            .header("content-type", "application/fhir+json")
            .body(patient("Origins").to_string())
    };
    let r = post("https://clinic.example:8443").send().await.expect("same origin");
    assert_eq!(r.status(), 201);
    assert!(location(&r).starts_with("https://clinic.example:8443/fhir/r4/Patient/"), "{}", location(&r));
    assert_eq!(post(&app.base).send().await.expect("host origin").status(), 403, "the Host's origin is not the public one");
    assert_eq!(post("https://evil.example").send().await.expect("other").status(), 403);
}

/// The generated certificate is valid for at most 397 days, from a little before now.
#[tokio::test]
async fn the_generated_certificate_lives_at_most_397_days() {
    let app = App::spawn().await.expect("app");
    let (_, pem) = x509_parser::pem::parse_x509_pem(app.cert_pem.as_bytes()).expect("pem");
    let cert = pem.parse_x509().expect("x509");
    let now = i64::try_from(app.tv.clock.now_secs()).expect("now");
    let (from, until) = (cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp());
    assert!(from <= now && now - from <= 86_400, "not before {from}, now {now}");
    assert!(until - now <= 397 * 86_400 && until - now > 360 * 86_400, "valid for {} days", (until - now) / 86_400);
}

/// No error body repeats what the client sent: not a requested id, not an unknown element or
/// parameter name, not a value.
#[tokio::test]
async fn error_bodies_echo_nothing_the_client_sent() {
    let app = App::spawn().await.expect("app");
    let (clin, _) = app.signed_in(Role::Physician).await.expect("clinician");
    let mut checked = 0;
    let mut check = |what: &str, body: String, marks: &[&str]| {
        for m in marks {
            assert!(!body.to_lowercase().contains(&m.to_lowercase()), "{what}: the body echoes {m:?}: {body}");
        }
        checked += 1;
    };
    // Ids in URLs, malformed and well-formed.
    for id in ["abc%3Cscript%3Ealert(1)%3C%2Fscript%3E", "Zq9-unknown-id-4711", "x%22onmouseover%3D1"] {
        for path in ["Patient", "AllergyIntolerance", "Appointment", "Encounter", "DocumentReference", "Practitioner", "Location", "Binary"]
        {
            let r = clin.get(app.url(&format!("/fhir/r4/{path}/{id}"))).send().await.expect("read");
            assert!(r.status().is_client_error(), "{path}/{id}: {}", r.status());
            check(&format!("{path}/{id}"), r.text().await.expect("body"), &["script", "unknown-id-4711", "onmouseover"]);
        }
        let r = clin.get(app.url(&format!("/api/v1/patients/{id}/care-team"))).send().await.expect("api");
        check("care team", r.text().await.expect("body"), &["script", "unknown-id-4711", "onmouseover"]);
        let r = clin.get(app.url(&format!("/ui/patients/{id}"))).send().await.expect("ui");
        check("ui chart", r.text().await.expect("body"), &["unknown-id-4711", "onmouseover", "alert(1)"]);
    }
    // Unknown elements and parameters.
    let mut p = patient("Echo");
    p["foo<script>"] = json!(1);
    let r =
        clin.post(app.url("/fhir/r4/Patient")).header("content-type", "application/fhir+json").body(p.to_string()).send().await.expect("p");
    assert_eq!(r.status(), 400);
    let body = r.text().await.expect("body");
    assert!(body.contains("\"expression\":[\"Patient\"]"), "the path names the known parent: {body}");
    check("Patient element", body, &["foo", "script"]);
    let mut p = patient("Echo");
    p["name"][0]["fooBarBaz"] = json!("x");
    let r =
        clin.post(app.url("/fhir/r4/Patient")).header("content-type", "application/fhir+json").body(p.to_string()).send().await.expect("p");
    check("nested element", r.text().await.expect("body"), &["fooBarBaz"]);
    let a = json!({"resourceType": "AllergyIntolerance", "evilElement": 1, "patient": {"reference": "Patient/x"}});
    let r = clin
        .post(app.url("/fhir/r4/AllergyIntolerance"))
        .header("content-type", "application/fhir+json")
        .body(a.to_string())
        .send()
        .await
        .expect("a");
    check("AllergyIntolerance element", r.text().await.expect("body"), &["evilElement"]);
    let a = json!({"resourceType": "Appointment", "status": "booked", "evilElement": 1});
    let r = clin
        .post(app.url("/fhir/r4/Appointment"))
        .header("content-type", "application/fhir+json")
        .body(a.to_string())
        .send()
        .await
        .expect("a");
    check("Appointment element", r.text().await.expect("body"), &["evilElement"]);
    for q in ["foo%3Cscript%3E=1", "name:evilmod=x", "birthdate=zz1970", "_count=lots-of-them"] {
        let r = clin.get(app.url(&format!("/fhir/r4/Patient?{q}"))).send().await.expect("search");
        assert_eq!(r.status(), 400, "{q}");
        check(q, r.text().await.expect("body"), &["foo", "script", "evilmod", "zz1970", "lots-of-them"]);
    }
    // The JSON API: unknown fields and values of the wrong type.
    let r = plain_client(&app)
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"username": "a", "password": "b", "foo<script>": 1}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 400);
    check("API unknown field", r.text().await.expect("body"), &["foo", "script"]);
    let r = plain_client(&app)
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"username": ["<b>x</b>"], "password": "b"}))
        .send()
        .await
        .expect("l");
    check("API wrong type", r.text().await.expect("body"), &["<b>"]);
    assert!(checked > 30);
}
