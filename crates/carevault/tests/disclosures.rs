//! Every disclosure findable per patient, on SQLite and (with CAREVAULT_TEST_DATABASE_URL)
//! PostgreSQL: a record that returned several patients' data (a patient search, an appointment
//! list, the waitlist, the break-glass queue) names them (`patients`, hashed with the record) and
//! is indexed under each of them (`audit_disclosures`, written in the record's transaction), so
//! "who saw patient X" (`audit_search` with a patient, `GET /api/v1/audit/events?patient=`, the UI
//! audit viewer and the CSV export) finds it; `audit verify` checks the index against the records.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use carevault_core::{Actor, AuditEventView, AuditQuery, BookRequest, CoreError, WaitlistRequest};
use carevault_domain::schedule::WeeklyWindow;
use carevault_domain::Role;
use carevault_testkit::{totp_code, App, TestVault, PASSWORD};
use serde_json::{json, Value};
use sqlx::{Executor, Row};

const DAY: i64 = 86_400_000_000;
const HOUR: i64 = 3_600_000_000;

fn patient(family: &str, given: &str) -> Vec<u8> {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": [given]}], "birthDate": "1980-02-03"}).to_string().into_bytes()
}

async fn new_patient(tv: &TestVault, fd: &Actor, family: &str, given: &str) -> String {
    tv.vault.create_patient(fd, fd.default_purpose(), &patient(family, given)).await.expect("patient").id.to_string()
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// "Who saw patient X": the audit search with a patient filter.
async fn about(tv: &TestVault, auditor: &Actor, pid: &str) -> Vec<AuditEventView> {
    let q = AuditQuery { patient: Some(pid.to_string()), ..Default::default() };
    let rows = tv.vault.audit_search(auditor, &q).await.expect("audit search");
    let mut seqs: Vec<i64> = rows.iter().map(|e| e.seq).collect();
    seqs.dedup();
    assert_eq!(seqs.len(), rows.len(), "a record is listed once, even when it names the patient twice");
    rows
}

/// The one record of `rows` that is a successful `action` on `resource`, newest first.
fn newest<'a>(rows: &'a [AuditEventView], action: &str, resource: &str) -> &'a AuditEventView {
    rows.iter()
        .find(|e| e.action == action && e.resource_type.as_deref() == Some(resource) && e.outcome == "success")
        .unwrap_or_else(|| panic!("no {action} of {resource} in {rows:?}"))
}

/// The disclosure index as stored, and what the records' `disclosed` columns say: (seq, patient).
async fn index_and_columns(tv: &TestVault) -> (Vec<(i64, String)>, Vec<(i64, String)>) {
    let mut c = tv.raw().await.expect("raw");
    let index: Vec<(i64, String)> = sqlx::query("SELECT seq, patient_id FROM audit_disclosures ORDER BY seq, patient_id")
        .fetch_all(&mut c)
        .await
        .expect("index")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut columns = Vec::new();
    for r in sqlx::query("SELECT seq, disclosed FROM audit_events WHERE disclosed IS NOT NULL").fetch_all(&mut c).await.expect("columns") {
        let seq: i64 = r.get(0);
        let ids: String = r.get(1);
        columns.extend(ids.split(' ').map(|id| (seq, id.to_string())));
    }
    columns.sort();
    (index, columns)
}

async fn audit_count(tv: &TestVault) -> i64 {
    let mut c = tv.raw().await.expect("raw");
    sqlx::query("SELECT COUNT(*) FROM audit_events").fetch_one(&mut c).await.expect("count").get(0)
}

/// A clerk's patient search returning A and B is found under A and under B (not under C), names
/// both, and only the page returned (not every match); the CSV export names them too.
#[tokio::test]
async fn a_patient_search_is_found_under_each_patient_it_returned() {
    let tv = TestVault::new().await.expect("vault");
    let v = &tv.vault;
    let (fd, _) = tv.staff_in("front_desk", None).await.expect("front desk");
    let a = new_patient(&tv, &fd, "Sharedname", "Ann").await;
    let b = new_patient(&tv, &fd, "Sharedname", "Bob").await;
    let c = new_patient(&tv, &fd, "Othername", "Cy").await;
    v.read_patient(&fd, fd.default_purpose(), &a).await.expect("a plain read of A");

    let page = v.search_patients(&fd, fd.default_purpose(), &params(&[("family", "Sharedname")])).await.expect("search");
    assert_eq!(page.total, 2);
    let (auditor, _) = tv.staff_in("auditor", None).await.expect("auditor");
    let under_a = about(&tv, &auditor, &a).await;
    let search = newest(&under_a, "search", "Patient");
    assert_eq!(search.patients, sorted(&[&a, &b]), "the search names both patients it returned");
    assert_eq!(search.patient_id, None);
    assert!(under_a.iter().any(|e| e.action == "read" && e.patient_id.as_deref() == Some(&a) && e.patients.is_empty()));
    assert!(under_a.iter().any(|e| e.action == "create" && e.patient_id.as_deref() == Some(&a)));
    let under_b = about(&tv, &auditor, &b).await;
    assert!(under_b.iter().any(|e| e.seq == search.seq), "found under B too");
    assert!(about(&tv, &auditor, &c).await.iter().all(|e| e.seq != search.seq), "not under C, whom it did not return");

    // Only the page returned is disclosed: with _count=1, the first of the two (by id).
    let first = page.records.iter().map(|r| r.id.to_string()).min().expect("first");
    let second = if first == a { b.clone() } else { a.clone() };
    let one = v.search_patients(&fd, fd.default_purpose(), &params(&[("family", "Sharedname"), ("_count", "1")])).await.expect("page");
    assert_eq!((one.total, one.records.len()), (2, 1));
    let paged = newest(&about(&tv, &auditor, &first).await, "search", "Patient").clone();
    assert_eq!(paged.patients, vec![first.clone()]);
    assert!(paged.seq > search.seq);
    assert!(about(&tv, &auditor, &second).await.iter().all(|e| e.seq != paged.seq), "the match not returned was not disclosed");
    // A search that returns nobody discloses nobody.
    v.search_patients(&fd, fd.default_purpose(), &params(&[("family", "Nobodyhere")])).await.expect("empty search");
    let all = v.audit_events(&auditor, 0, 1000).await.expect("events");
    let empty = all.iter().rev().find(|e| e.action == "search" && e.resource_type.as_deref() == Some("Patient")).expect("empty");
    assert!(empty.patients.is_empty());

    // The CSV export names the disclosed patients in its last column.
    let q = AuditQuery { patient: Some(b.clone()), ..Default::default() };
    let csv = v.audit_export_csv(&auditor, &q).await.expect("export");
    let line = csv.split("\r\n").find(|l| l.split(',').nth(1) == Some(&search.seq.to_string())).expect("the search's line");
    assert!(line.ends_with(&format!(",{}", sorted(&[&a, &b]).join(" "))), "{line}");

    let (index, columns) = index_and_columns(&tv).await;
    assert_eq!(index, columns);
    assert!(index.contains(&(search.seq, a.clone())) && index.contains(&(search.seq, b.clone())));
    assert!(v.verify_audit().await.expect("verify").intact());
}

async fn clinic(tv: &TestVault) -> (String, String) {
    let v = &tv.vault;
    let (admin, _) = tv.staff(Role::PracticeAdmin).await.expect("admin");
    let (loc, pr) = tv.location_and_practitioner(&admin, "UTC").await.expect("location and practitioner");
    let windows: Vec<WeeklyWindow> = (1..=7).map(|d| WeeklyWindow { weekday: d, start_minute: 8 * 60, end_minute: 12 * 60 }).collect();
    v.set_availability(&admin, &pr, &loc, &windows).await.expect("availability");
    (loc, pr)
}

/// Lists and queues: a practitioner's day, the waitlist and the break-glass review queue are each
/// found under every patient they showed, and name them.
#[tokio::test]
async fn lists_and_queues_are_found_under_each_patient_they_showed() {
    let tv = TestVault::new().await.expect("vault");
    let v = &tv.vault;
    let (loc, pr) = clinic(&tv).await;
    let (fd, _) = tv.staff_in("front_desk", None).await.expect("front desk");
    let p = fd.default_purpose();
    let x = new_patient(&tv, &fd, "Dayone", "Xena").await;
    let y = new_patient(&tv, &fd, "Daytwo", "Yuri").await;
    let z = new_patient(&tv, &fd, "Daythree", "Zoe").await;
    let day = (carevault_core::Clock::now_micros(&*tv.clock) / DAY + 2) * DAY;
    for (pid, h) in [(&x, 9), (&y, 10)] {
        let req = BookRequest {
            patient_id: pid.clone(),
            practitioner_id: pr.clone(),
            location_id: loc.clone(),
            start: day + h * HOUR,
            minutes: Some(30),
            ..Default::default()
        };
        v.book(&fd, p, &req, false).await.expect("book");
    }
    let date = carevault_domain::schedule::local_date(&carevault_domain::practice::TimeZoneName::utc(), day).expect("date").to_string();
    let found = v.search_appointments(&fd, p, &params(&[("practitioner", &pr), ("date", &date)])).await.expect("the day");
    assert_eq!(found.len(), 2);
    let (auditor, _) = tv.staff_in("auditor", None).await.expect("auditor");
    let day_list = newest(&about(&tv, &auditor, &x).await, "search", "Appointment").clone();
    assert_eq!(day_list.patients, sorted(&[&x, &y]));
    assert!(about(&tv, &auditor, &y).await.iter().any(|e| e.seq == day_list.seq));
    assert!(about(&tv, &auditor, &z).await.iter().all(|e| e.seq != day_list.seq));
    // A shorter page discloses only what it showed (the 09:00 appointment's patient).
    v.search_appointments(&fd, p, &params(&[("practitioner", &pr), ("date", &date), ("_count", "1")])).await.expect("one");
    let short = newest(&about(&tv, &auditor, &x).await, "search", "Appointment").clone();
    assert!(short.seq > day_list.seq);
    assert_eq!(short.patients, vec![x.clone()]);
    assert!(about(&tv, &auditor, &y).await.iter().all(|e| e.seq != short.seq));

    // The waitlist of the location.
    for pid in [&y, &z] {
        let req = WaitlistRequest {
            patient_id: pid.clone(),
            practitioner_id: pr.clone(),
            location_id: loc.clone(),
            minutes: 30,
            from: date.clone(),
            to: date.clone(),
        };
        v.waitlist_add(&fd, p, &req).await.expect("waitlist");
    }
    assert_eq!(v.waitlist(&fd, p, &loc, None).await.expect("list").len(), 2);
    let waitlist = newest(&about(&tv, &auditor, &z).await, "search", "Waitlist").clone();
    assert_eq!(waitlist.patients, sorted(&[&y, &z]));
    assert!(about(&tv, &auditor, &y).await.iter().any(|e| e.seq == waitlist.seq));
    assert!(about(&tv, &auditor, &x).await.iter().all(|e| e.seq != waitlist.seq));

    // The break-glass review queue shows the reasons given for two patients.
    let (doc, _) = tv.staff_in("physician", None).await.expect("physician");
    v.break_glass(&doc, &x, "medical-emergency", "collapsed at the desk").await.expect("glass x");
    v.break_glass(&doc, &z, "medical-emergency", "").await.expect("glass z");
    let (privacy, _) = tv.staff_in("privacy_officer", None).await.expect("privacy");
    assert_eq!(v.break_glass_queue(&privacy, "open").await.expect("queue").len(), 2);
    let queue = newest(&about(&tv, &auditor, &x).await, "read", "BreakGlass").clone();
    assert_eq!(queue.patients, sorted(&[&x, &z]));
    assert!(about(&tv, &auditor, &z).await.iter().any(|e| e.seq == queue.seq));
    assert!(about(&tv, &auditor, &y).await.iter().all(|e| e.seq != queue.seq));

    let (index, columns) = index_and_columns(&tv).await;
    assert_eq!(index, columns);
    assert!(v.verify_audit().await.expect("verify").intact());
}

/// While every write to the disclosure index fails (a trigger; on PostgreSQL it fails the
/// COMMIT itself, after both the record and its rows were written), a search fails with 503 and
/// leaves neither its record nor any row; records without disclosures still commit. Once writes
/// work, the search commits with its rows: the index holds exactly the committed records' ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disclosure_rows_commit_with_their_record_or_not_at_all() {
    let tv = TestVault::new().await.expect("vault");
    let v = &tv.vault;
    let (fd, _) = tv.staff_in("front_desk", None).await.expect("front desk");
    let a = new_patient(&tv, &fd, "Atomic", "Ann").await;
    let b = new_patient(&tv, &fd, "Atomic", "Bob").await;
    let search = params(&[("family", "Atomic")]);
    v.search_patients(&fd, fd.default_purpose(), &search).await.expect("a first search");

    let mut switch = tv.raw().await.expect("raw");
    switch.execute("CREATE TABLE cv_fault (x INTEGER)").await.expect("table");
    if tv.backend.is_postgres() {
        switch
            .execute(
                "CREATE FUNCTION cv_fault_fn() RETURNS trigger AS $$ BEGIN IF EXISTS (SELECT 1 FROM cv_fault) THEN \
                 RAISE EXCEPTION 'injected fault at commit'; END IF; RETURN NULL; END $$ LANGUAGE plpgsql",
            )
            .await
            .expect("function");
        switch
            .execute(
                "CREATE CONSTRAINT TRIGGER cv_fault_commit AFTER INSERT ON audit_disclosures DEFERRABLE INITIALLY DEFERRED \
                 FOR EACH ROW EXECUTE FUNCTION cv_fault_fn()",
            )
            .await
            .expect("trigger");
    } else {
        switch
            .execute(
                "CREATE TRIGGER cv_fault_rollback BEFORE INSERT ON audit_disclosures WHEN EXISTS (SELECT 1 FROM cv_fault) \
                 BEGIN SELECT RAISE(ROLLBACK, 'injected fault'); END",
            )
            .await
            .expect("trigger");
    }
    let before = (audit_count(&tv).await, index_and_columns(&tv).await);
    switch.execute("INSERT INTO cv_fault VALUES (1)").await.expect("on");
    for _ in 0..3 {
        let r = v.search_patients(&fd, fd.default_purpose(), &search).await;
        assert!(matches!(r, Err(CoreError::AuditUnavailable)), "{:?}", r.map(|p| p.total));
    }
    assert_eq!((audit_count(&tv).await, index_and_columns(&tv).await), before, "a failed search left its record or a row");
    // A record that discloses nobody writes no row, so it is not affected.
    v.read_patient(&fd, fd.default_purpose(), &a).await.expect("a plain read while the index fails");
    assert_eq!(audit_count(&tv).await, before.0 + 1);

    switch.execute("DELETE FROM cv_fault").await.expect("off");
    let page = v.search_patients(&fd, fd.default_purpose(), &search).await.expect("search once writes work");
    assert_eq!(page.total, 2);
    let (index, columns) = index_and_columns(&tv).await;
    assert_eq!(index, columns, "the index holds exactly what the committed records disclose");
    let seqs: std::collections::BTreeSet<i64> = index.iter().map(|r| r.0).collect();
    assert_eq!(seqs.len(), 2, "the first search and the last: nothing of the failed ones");
    let last = *seqs.iter().next_back().expect("last");
    assert_eq!(index.iter().filter(|r| r.0 == last).map(|r| r.1.clone()).collect::<Vec<_>>(), sorted(&[&a, &b]));
    let r = v.verify_audit().await.expect("verify");
    assert!(r.intact(), "{:?}", r.failures);
}

/// `audit verify` holds the index against the (hashed) records: a row deleted, added or altered
/// fails, and so does a record whose disclosed patients were changed.
#[tokio::test]
async fn audit_verify_checks_the_disclosure_index() {
    let tv = TestVault::new().await.expect("vault");
    let v = &tv.vault;
    let (fd, _) = tv.staff_in("front_desk", None).await.expect("front desk");
    let a = new_patient(&tv, &fd, "Verified", "Ann").await;
    let b = new_patient(&tv, &fd, "Verified", "Bob").await;
    let c = new_patient(&tv, &fd, "Bystander", "Cy").await;
    v.search_patients(&fd, fd.default_purpose(), &params(&[("family", "Verified")])).await.expect("search");
    v.checkpoint().await.expect("checkpoint");
    assert!(v.verify_audit().await.expect("verify").intact());
    let (index, _) = index_and_columns(&tv).await;
    let seq = index[0].0;
    let mut raw = tv.raw().await.expect("raw");
    let failure = |r: &carevault_core::VerifyReport| r.failures.iter().map(|f| f.message.clone()).collect::<Vec<_>>().join("; ");

    let tamper = [
        (format!("DELETE FROM audit_disclosures WHERE seq = {seq} AND patient_id = '{a}'"), "rows were deleted"),
        (format!("INSERT INTO audit_disclosures (seq, patient_id) VALUES ({seq}, '{c}')"), "rows were added"),
        (format!("UPDATE audit_disclosures SET patient_id = '{c}' WHERE seq = {seq} AND patient_id = '{b}'"), "rows were altered"),
    ];
    for (sql, says) in tamper {
        raw.execute(sql.as_str()).await.expect("tamper");
        let r = v.verify_audit().await.expect("verify");
        assert!(!r.intact(), "{sql}");
        let text = failure(&r);
        assert!(text.contains("audit_disclosures") && text.contains(says), "{sql}: {text}");
        // Put it back.
        raw.execute(format!("DELETE FROM audit_disclosures WHERE seq = {seq}").as_str()).await.expect("clear");
        for pid in [&a, &b] {
            raw.execute(format!("INSERT INTO audit_disclosures (seq, patient_id) VALUES ({seq}, '{pid}')").as_str())
                .await
                .expect("restore");
        }
        assert!(v.verify_audit().await.expect("verify").intact(), "restored after {sql}");
    }
    // Hiding a patient from the record itself breaks the chain.
    raw.execute(format!("UPDATE audit_events SET disclosed = '{a}' WHERE seq = {seq}").as_str()).await.expect("tamper record");
    let r = v.verify_audit().await.expect("verify");
    assert_eq!(r.first_failure().and_then(|f| f.seq), Some(seq), "{}", failure(&r));
    assert!(failure(&r).contains("was altered"), "{}", failure(&r));
}

/// The API (`GET /api/v1/audit/events?patient=`), the UI audit viewer's patient filter and its
/// CSV export, over real HTTPS, after a FHIR patient search by a clerk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_the_viewer_and_the_export_name_the_disclosed_patients() {
    let app = App::spawn().await.expect("app");
    let (fd, _) = app.signed_in(Role::FrontDesk).await.expect("front desk");
    let mut ids = Vec::new();
    for given in ["Ann", "Bob"] {
        let body = json!({"resourceType": "Patient", "name": [{"family": "Httpshared", "given": [given]}]}).to_string();
        let r =
            fd.post(app.url("/fhir/r4/Patient")).header("content-type", "application/fhir+json").body(body).send().await.expect("create");
        assert_eq!(r.status(), 201);
        ids.push(r.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string());
    }
    let (a, b) = (ids[0].clone(), ids[1].clone());
    let r = fd.get(app.url("/fhir/r4/Patient?family=Httpshared")).send().await.expect("search");
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("bundle")["total"], 2);

    let (auditor, _) = app.signed_in(Role::Auditor).await.expect("auditor");
    let r = auditor.get(app.url(&format!("/api/v1/audit/events?patient={a}"))).send().await.expect("events");
    assert_eq!(r.status(), 200);
    let events: Vec<Value> = r.json().await.expect("json");
    let search = events
        .iter()
        .find(|e| e["action"] == "search" && e["resource_type"] == "Patient")
        .unwrap_or_else(|| panic!("the search is found under A: {events:?}"));
    assert_eq!(search["patients"], json!(sorted(&[&a, &b])));
    assert!(events.iter().filter(|e| e["action"] == "create").all(|e| e["patients"] == json!([])));
    let seq = search["seq"].as_i64().expect("seq");
    let r = auditor.get(app.url(&format!("/api/v1/audit/events?patient={b}"))).send().await.expect("events b");
    let under_b: Vec<Value> = r.json().await.expect("json");
    assert!(under_b.iter().any(|e| e["seq"] == seq));
    // Reading forward (`after`) shows the same list.
    let r = auditor.get(app.url(&format!("/api/v1/audit/events?after={}&limit=1", seq - 1))).send().await.expect("after");
    assert_eq!(r.json::<Value>().await.expect("json")[0]["patients"], json!(sorted(&[&a, &b])));

    // The UI viewer: the patient filter finds the search and shows both patients.
    let staff = app.add_staff(Role::Auditor).await.expect("auditor staff");
    let c = browser(&app);
    ui_sign_in(&app, &c, &staff.username, &staff.secret).await;
    let r = c.get(app.url(&format!("/ui/audit?patient={b}"))).send().await.expect("viewer");
    assert_eq!(r.status(), 200);
    let html = r.text().await.expect("html");
    assert!(html.contains("2 patients"), "{html}");
    for pid in [&a, &b] {
        assert!(html.contains(&format!("href=\"/ui/patients/{pid}\"")), "{pid} linked");
    }
    let r = c.get(app.url(&format!("/ui/audit/export.csv?patient={a}"))).send().await.expect("csv");
    assert_eq!(r.status(), 200);
    let csv = r.text().await.expect("csv");
    assert!(csv.starts_with(
        "time,sequence,user,action,outcome,resource type,resource id,patient,purpose,source ip,review flags,patients disclosed\r\n"
    ));
    assert!(csv.contains(&format!(",{seq},")) && csv.contains(&sorted(&[&a, &b]).join(" ")), "{csv}");
}

/// A browser-like client that does not follow redirects.
fn browser(app: &App) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(app.cert_pem.as_bytes()).expect("pem");
    reqwest::Client::builder()
        .add_root_certificate(cert)
        .resolve("localhost", ([127, 0, 0, 1], 0).into())
        .cookie_store(true)
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let i = html.find(marker).expect("a form token");
    let rest = &html[i + marker.len()..];
    rest[..rest.find('"').expect("end quote")].to_string()
}

/// Signs in through the UI (the account's secret is enrolled already).
async fn ui_sign_in(app: &App, c: &reqwest::Client, username: &str, secret: &str) {
    use carevault_core::Clock;
    let page = c.get(app.url("/ui/signin")).send().await.expect("signin").text().await.expect("html");
    let r = c
        .post(app.url("/ui/signin"))
        .form(&[("csrf", csrf_of(&page).as_str()), ("username", username), ("password", PASSWORD)])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 303);
    let mfa = c.get(app.url("/ui/signin/mfa")).send().await.expect("mfa").text().await.expect("html");
    let code = totp_code(secret, app.tv.clock.now_secs());
    let r =
        c.post(app.url("/ui/signin/totp")).form(&[("csrf", csrf_of(&mfa).as_str()), ("code", code.as_str())]).send().await.expect("totp");
    assert_eq!(r.status(), 303);
}
