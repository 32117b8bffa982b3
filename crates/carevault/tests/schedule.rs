//! Scheduling through the core, on SQLite and (with CAREVAULT_TEST_DATABASE_URL) PostgreSQL:
//! one slot, fifty concurrent bookings, exactly one wins; bookings in the past or outside
//! availability are refused; slots across a daylight-saving change. Appointment types (the
//! duration, per organization), rooms (never double-booked, twenty practitioners racing for one),
//! weekly series (local time kept across the autumn change, all or nothing, cancelling the future
//! ones), the waitlist (offer, decline, accept, a time taken meanwhile, only bookable offers) and
//! appointment search; every refusal leaves nothing written and is audited where the core audits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use carevault_core::{Actor, BookRequest, CoreError, PractitionerRequest, WaitlistRequest};
use carevault_domain::schedule::WeeklyWindow;
use carevault_domain::Role;
use carevault_testkit::TestVault;
use serde_json::json;

async fn setup(tz: &str, windows: &[WeeklyWindow]) -> (TestVault, Actor, String, String, String) {
    let tv = TestVault::new().await.expect("vault");
    let v = &tv.vault;
    let (admin, _) = tv.staff(Role::PracticeAdmin).await.expect("admin");
    let (fd, _) = tv.staff(Role::FrontDesk).await.expect("front desk");
    let loc = v.add_unit("location", "Main Street", Some("default"), None, Some(tz)).await.expect("location");
    let req = PractitionerRequest {
        npi: "1245319599".into(),
        family: "Ng".into(),
        given: "Mei".into(),
        organization_id: "default".into(),
        location_ids: vec![loc.clone()],
        ..Default::default()
    };
    let pr = v.add_practitioner(&admin, &req).await.expect("practitioner").id;
    v.set_availability(&fd, &pr, &loc, windows).await.expect("availability");
    let body = json!({"resourceType": "Patient", "name": [{"family": "Booker"}]}).to_string();
    let patient = v.create_patient(&fd, fd.default_purpose(), body.as_bytes()).await.expect("patient").id.to_string();
    (tv, fd, loc, pr, patient)
}

fn every_day(start: u16, end: u16) -> Vec<WeeklyWindow> {
    (1..=7).map(|d| WeeklyWindow { weekday: d, start_minute: start, end_minute: end }).collect()
}

fn utc(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>().expect("timestamp").as_microsecond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_bookings_of_one_slot_exactly_one_succeeds() {
    let (tv, fd, loc, pr, patient) = setup("UTC", &every_day(8 * 60, 17 * 60)).await;
    let day = 86_400_000_000i64;
    let start = (carevault_core::Clock::now_micros(&*tv.clock) / day + 2) * day + 10 * 3_600_000_000;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (v, fd, loc, pr, patient) = (tv.vault.clone(), fd.clone(), loc.clone(), pr.clone(), patient.clone());
        tasks.push(tokio::spawn(async move { v.book_appointment(&fd, fd.default_purpose(), &patient, &pr, &loc, start, 30).await }));
    }
    let mut won = 0;
    let mut conflicts = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(a) => {
                won += 1;
                assert_eq!((a.start, a.end), (start, start + 30 * 60_000_000));
            }
            Err(CoreError::Conflict(_)) => conflicts += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((won, conflicts), (1, 49));
    // The slot is gone from the free list; its neighbours are not.
    let date = carevault_domain::schedule::local_date(&carevault_domain::practice::TimeZoneName::parse("tz", "UTC").expect("utc"), start)
        .expect("date")
        .to_string();
    let free = tv.vault.free_slots(&fd, &pr, &loc, &date, 1, 30).await.expect("slots");
    assert!(!free.iter().any(|s| s.start == start));
    assert!(free.iter().any(|s| s.start == start + 30 * 60_000_000));
    assert!(tv.vault.verify_audit().await.expect("verify").intact());
}

#[tokio::test]
async fn past_and_unavailable_times_are_refused() {
    let (tv, fd, loc, pr, patient) = setup("UTC", &every_day(8 * 60, 12 * 60)).await;
    let v = &tv.vault;
    let p = fd.default_purpose();
    let day = 86_400_000_000i64;
    let now = carevault_core::Clock::now_micros(&*tv.clock);
    let yesterday_9 = (now / day - 1) * day + 9 * 3_600_000_000;
    match v.book_appointment(&fd, p, &patient, &pr, &loc, yesterday_9, 30).await {
        Err(CoreError::Invalid(e)) => assert!(e.message.contains("past"), "{e:?}"),
        other => panic!("{other:?}"),
    }
    let tomorrow_13 = (now / day + 1) * day + 13 * 3_600_000_000;
    match v.book_appointment(&fd, p, &patient, &pr, &loc, tomorrow_13, 30).await {
        Err(CoreError::Invalid(e)) => assert!(e.message.contains("not a free slot"), "{e:?}"),
        other => panic!("{other:?}"),
    }
    let misaligned = (now / day + 1) * day + 9 * 3_600_000_000 + 10 * 60_000_000;
    assert!(matches!(v.book_appointment(&fd, p, &patient, &pr, &loc, misaligned, 30).await, Err(CoreError::Invalid(_))));
    assert!(matches!(v.book_appointment(&fd, p, &patient, &pr, "loc-nowhere", tomorrow_13, 30).await, Err(CoreError::NotFound { .. })));
    assert!(matches!(v.free_slots(&fd, &pr, &loc, "2027-02-30", 1, 30).await, Err(CoreError::Invalid(_))));
    assert!(matches!(
        v.set_availability(&fd, &pr, &loc, &[WeeklyWindow { weekday: 8, start_minute: 0, end_minute: 60 }]).await,
        Err(CoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn slots_and_bookings_across_the_spring_forward() {
    let (tv, fd, loc, pr, patient) = setup("America/Chicago", &[WeeklyWindow { weekday: 7, start_minute: 0, end_minute: 4 * 60 }]).await;
    let v = &tv.vault;
    // Next year's second Sunday of March, when in America/Chicago 02:00 CST jumps to 03:00 CDT
    // (always in the future, so the test does not expire).
    let now = jiff::Timestamp::from_microsecond(carevault_core::Clock::now_micros(tv.clock.as_ref())).expect("now");
    let year = jiff::tz::TimeZone::UTC.to_datetime(now).year() + 1;
    let mut day = jiff::civil::date(year, 3, 8);
    while day.weekday() != jiff::civil::Weekday::Sunday {
        day = day.tomorrow().expect("day");
    }
    let week_later = day.checked_add(jiff::Span::new().days(7)).expect("a week later");
    let at = |d: jiff::civil::Date, hm: &str| utc(&format!("{d}T{hm}:00Z"));
    let slots = v.free_slots(&fd, &pr, &loc, &day.to_string(), 1, 60).await.expect("slots");
    let starts: Vec<i64> = slots.iter().map(|s| s.start).collect();
    assert_eq!(starts, vec![at(day, "06:00"), at(day, "08:00")], "00:00 CST and 03:00 CDT");
    // 01:00 CST would end at 02:00, which does not exist that night.
    assert!(matches!(
        v.book_appointment(&fd, fd.default_purpose(), &patient, &pr, &loc, at(day, "07:00"), 60).await,
        Err(CoreError::Invalid(_))
    ));
    let a = v.book_appointment(&fd, fd.default_purpose(), &patient, &pr, &loc, at(day, "08:00"), 60).await.expect("03:00 CDT");
    assert_eq!(a.end - a.start, 3_600_000_000);
    // A week later the same wall-clock window is an hour earlier in UTC.
    let later = v.free_slots(&fd, &pr, &loc, &week_later.to_string(), 1, 60).await.expect("slots");
    assert_eq!(later[0].start, at(week_later, "05:00"));
    assert_eq!(later.len(), 4);
}

#[tokio::test]
async fn status_flow_cancel_frees_the_slot_and_history_is_kept() {
    let (tv, fd, loc, pr, patient) = setup("UTC", &every_day(8 * 60, 12 * 60)).await;
    let v = &tv.vault;
    let p = fd.default_purpose();
    let day = 86_400_000_000i64;
    let start = (carevault_core::Clock::now_micros(&*tv.clock) / day + 1) * day + 9 * 3_600_000_000;
    let a = v.book_appointment(&fd, p, &patient, &pr, &loc, start, 30).await.expect("book");
    // Fulfilled straight from booked: refused; a cancellation needs a reason from the list.
    assert!(matches!(v.set_appointment_status(&fd, p, &a.id, "fulfilled", None).await, Err(CoreError::Conflict(_))));
    assert!(matches!(v.set_appointment_status(&fd, p, &a.id, "cancelled", None).await, Err(CoreError::Invalid(_))));
    assert!(matches!(v.set_appointment_status(&fd, p, &a.id, "cancelled", Some("because")).await, Err(CoreError::Invalid(_))));
    assert!(matches!(v.set_appointment_status(&fd, p, &a.id, "teleported", None).await, Err(CoreError::Invalid(_))));
    v.set_appointment_status(&fd, p, &a.id, "cancelled", Some("pat")).await.expect("cancel");
    // The time is free again and can be booked.
    let b = v.book_appointment(&fd, p, &patient, &pr, &loc, start, 30).await.expect("rebook the freed slot");
    for s in ["arrived", "checked-in", "fulfilled"] {
        v.set_appointment_status(&fd, p, &b.id, s, None).await.expect(s);
    }
    assert!(matches!(v.set_appointment_status(&fd, p, &b.id, "cancelled", Some("pat")).await, Err(CoreError::Conflict(_))));
    let h = v.appointment_history(&fd, p, &a.id).await.expect("history");
    assert_eq!(
        h.iter().map(|x| (x.1.as_str(), x.2.as_str(), x.3.as_deref())).collect::<Vec<_>>(),
        vec![("booked", "cancelled", Some("pat"))]
    );
    assert_eq!(v.appointment_history(&fd, p, &b.id).await.expect("history").len(), 3);
    assert_eq!(v.read_appointment(&fd, p, &b.id).await.expect("read").status, "fulfilled");
}

#[tokio::test]
async fn holidays_and_leave_remove_slots() {
    let (tv, fd, loc, pr, patient) = setup("Europe/Berlin", &every_day(8 * 60, 10 * 60)).await;
    let v = &tv.vault;
    assert_eq!(v.free_slots(&fd, &pr, &loc, "2031-12-24", 3, 30).await.expect("slots").len(), 12);
    // A holiday closes the location for the whole local day (in Berlin's time zone).
    v.add_closure(&fd, &loc, None, "2031-12-25", "2031-12-25", "holiday").await.expect("holiday");
    let slots = v.free_slots(&fd, &pr, &loc, "2031-12-24", 3, 30).await.expect("slots");
    assert_eq!(slots.len(), 8);
    assert!(slots.iter().all(|s| carevault_domain::schedule::local_date(
        &carevault_domain::practice::TimeZoneName::parse("tz", "Europe/Berlin").expect("tz"),
        s.start
    )
    .expect("date")
    .to_string()
        != "2031-12-25"));
    // Leave closes one practitioner's days; booking into it is refused.
    v.add_closure(&fd, &loc, Some(&pr), "2031-12-26", "2031-12-26", "leave").await.expect("leave");
    assert_eq!(v.free_slots(&fd, &pr, &loc, "2031-12-24", 3, 30).await.expect("slots").len(), 4);
    let on_leave = utc("2031-12-26T08:00:00Z");
    assert!(matches!(v.book_appointment(&fd, fd.default_purpose(), &patient, &pr, &loc, on_leave, 30).await, Err(CoreError::Invalid(_))));
    // Bad input: a holiday for one practitioner, leave without one, reversed dates.
    assert!(matches!(v.add_closure(&fd, &loc, Some(&pr), "2031-12-27", "2031-12-27", "holiday").await, Err(CoreError::Invalid(_))));
    assert!(matches!(v.add_closure(&fd, &loc, None, "2031-12-27", "2031-12-27", "leave").await, Err(CoreError::Invalid(_))));
    assert!(matches!(v.add_closure(&fd, &loc, None, "2031-12-28", "2031-12-27", "holiday").await, Err(CoreError::Invalid(_))));
}

#[tokio::test]
async fn rescheduling_moves_the_booking_and_keeps_both_histories() {
    let (tv, fd, loc, pr, patient) = setup("UTC", &every_day(8 * 60, 12 * 60)).await;
    let v = &tv.vault;
    let p = fd.default_purpose();
    let day = 86_400_000_000i64;
    let start = (carevault_core::Clock::now_micros(&*tv.clock) / day + 1) * day + 9 * 3_600_000_000;
    let a = v.book_appointment(&fd, p, &patient, &pr, &loc, start, 30).await.expect("book");
    // Not a slot (outside availability) and into the past: refused, nothing changes.
    assert!(matches!(v.reschedule_appointment(&fd, p, &a.id, start + 5 * 3_600_000_000).await, Err(CoreError::Invalid(_))));
    assert!(matches!(v.reschedule_appointment(&fd, p, &a.id, start - 2 * day).await, Err(CoreError::Invalid(_))));
    assert_eq!(v.read_appointment(&fd, p, &a.id).await.expect("read").status, "booked");
    let b = v.reschedule_appointment(&fd, p, &a.id, start + day).await.expect("reschedule");
    assert_eq!(b.start, start + day);
    assert_eq!(v.read_appointment(&fd, p, &a.id).await.expect("old").status, "cancelled");
    let old = v.appointment_history(&fd, p, &a.id).await.expect("history");
    assert_eq!(old.last().and_then(|h| h.3.clone()), Some(format!("rescheduled:{}", b.id)));
    let new = v.appointment_history(&fd, p, &b.id).await.expect("history");
    assert_eq!(new[0].1, format!("rescheduled:{}", a.id));
    // The old time is free again; the new one is taken.
    v.book_appointment(&fd, p, &patient, &pr, &loc, start, 30).await.expect("old time free");
    assert!(matches!(v.book_appointment(&fd, p, &patient, &pr, &loc, start + day, 30).await, Err(CoreError::Conflict(_))));
    // A cancelled appointment cannot be moved.
    assert!(matches!(v.reschedule_appointment(&fd, p, &a.id, start + 2 * day).await, Err(CoreError::Conflict(_))));
}

#[tokio::test]
async fn overbooking_needs_its_own_permission_and_stays_inside_availability() {
    let (tv, fd, loc, pr, patient) = setup("UTC", &every_day(8 * 60, 12 * 60)).await;
    let v = &tv.vault;
    let (doc, _) = tv.staff(Role::Physician).await.expect("physician");
    let day = 86_400_000_000i64;
    let start = (carevault_core::Clock::now_micros(&*tv.clock) / day + 1) * day + 9 * 3_600_000_000;
    v.book_appointment(&fd, fd.default_purpose(), &patient, &pr, &loc, start, 30).await.expect("book");
    // The front desk may not overbook; a physician may, inside availability only.
    assert!(matches!(
        v.overbook_appointment(&fd, fd.default_purpose(), &patient, &pr, &loc, start, 30).await,
        Err(CoreError::Forbidden { .. })
    ));
    let extra = v.overbook_appointment(&doc, doc.default_purpose(), &patient, &pr, &loc, start, 30).await.expect("overbook");
    assert_eq!(extra.start, start);
    assert!(matches!(
        v.overbook_appointment(&doc, doc.default_purpose(), &patient, &pr, &loc, start + 5 * 3_600_000_000, 30).await,
        Err(CoreError::Invalid(_))
    ));
    // Ordinary booking of that time is still refused.
    assert!(matches!(v.book_appointment(&fd, fd.default_purpose(), &patient, &pr, &loc, start, 30).await, Err(CoreError::Conflict(_))));
}

// ---------------------------------------------------------------------------------------------
// Appointment types, rooms, weekly series, the waitlist and appointment search.

const DAY: i64 = 86_400_000_000;
const HOUR: i64 = 3_600_000_000;
const MINUTE: i64 = 60_000_000;

/// Tables a scheduling change may touch: a refusal must leave all of them as they were.
const TABLES: [&str; 5] = ["appointments", "appointment_history", "appointment_types", "waitlist", "patient_versions"];

async fn count(tv: &TestVault, table: &str) -> i64 {
    use sqlx::Row;
    let mut c = tv.raw().await.expect("raw");
    sqlx::query(&format!("SELECT COUNT(*) FROM {table}")).fetch_one(&mut c).await.expect("count").get(0)
}

/// Row counts of the scheduling tables, and of the audit log.
async fn snapshot(tv: &TestVault) -> (Vec<i64>, i64) {
    let mut rows = Vec::new();
    for t in TABLES {
        rows.push(count(tv, t).await);
    }
    (rows, count(tv, "audit_events").await)
}

/// The newest audit record: (action, outcome, resource type).
async fn last_audit(tv: &TestVault) -> (String, String, String) {
    use sqlx::Row;
    let mut c = tv.raw().await.expect("raw");
    let r = sqlx::query("SELECT action, outcome, resource_type FROM audit_events ORDER BY seq DESC LIMIT 1")
        .fetch_one(&mut c)
        .await
        .expect("last audit");
    (r.get(0), r.get(1), r.get::<Option<String>, _>(2).unwrap_or_default())
}

/// After a refusal: nothing written, and exactly one audit record `audited` (action, outcome,
/// resource type) when the code audits the refusal, none otherwise.
async fn nothing_written(tv: &TestVault, before: &(Vec<i64>, i64), audited: Option<(&str, &str, &str)>) {
    let (rows, audit) = snapshot(tv).await;
    assert_eq!(rows, before.0, "a refusal wrote to {TABLES:?}");
    match audited {
        Some((action, outcome, resource)) => {
            assert_eq!(audit, before.1 + 1, "one audit record for the refusal");
            let last = last_audit(tv).await;
            assert_eq!((last.0.as_str(), last.1.as_str(), last.2.as_str()), (action, outcome, resource));
        }
        None => assert_eq!(audit, before.1, "no audit record"),
    }
}

/// A valid NPI (Luhn check digit over the 80840 prefix) distinct for each `n`.
fn npi(n: u32) -> String {
    let base = format!("1{:08}", 10_000 + n);
    (0..10).map(|d| format!("{base}{d}")).find(|s| carevault_domain::practice::Npi::parse("npi", s).is_ok()).expect("an NPI")
}

/// Another practitioner at `loc` with `windows`.
async fn practitioner(tv: &TestVault, admin: &Actor, loc: &str, n: u32, windows: &[WeeklyWindow]) -> String {
    let req = PractitionerRequest {
        npi: npi(n),
        family: format!("Doc{}", n.to_string().bytes().map(|d| char::from(b'a' + d - b'0')).collect::<String>()),
        given: "Extra".into(),
        organization_id: "default".into(),
        location_ids: vec![loc.to_string()],
        ..Default::default()
    };
    let pr = tv.vault.add_practitioner(admin, &req).await.expect("practitioner").id;
    tv.vault.set_availability(admin, &pr, loc, windows).await.expect("availability");
    pr
}

async fn new_patient(tv: &TestVault, fd: &Actor, family: &str) -> String {
    let body = json!({"resourceType": "Patient", "name": [{"family": family}]}).to_string();
    tv.vault.create_patient(fd, fd.default_purpose(), body.as_bytes()).await.expect("patient").id.to_string()
}

fn booking(patient: &str, pr: &str, loc: &str, start: i64, minutes: Option<u16>) -> BookRequest {
    BookRequest { patient_id: patient.into(), practitioner_id: pr.into(), location_id: loc.into(), start, minutes, ..Default::default() }
}

/// Midnight UTC `days` days from the test clock's today.
fn midnight_in(tv: &TestVault, days: i64) -> i64 {
    (carevault_core::Clock::now_micros(&*tv.clock) / DAY + days) * DAY
}

fn utc_date(micros: i64) -> String {
    carevault_domain::schedule::local_date(&carevault_domain::practice::TimeZoneName::utc(), micros).expect("date").to_string()
}

/// One waitlist entry, as the location's list shows it.
async fn entry(tv: &TestVault, fd: &Actor, loc: &str, id: &str) -> carevault_core::WaitlistView {
    tv.vault.waitlist(fd, fd.default_purpose(), loc, None).await.expect("list").into_iter().find(|e| e.id == id).expect("entry")
}

fn invalid_at(r: Result<impl std::fmt::Debug, CoreError>, path: &str) {
    match r {
        Err(CoreError::Invalid(e)) => assert_eq!(e.path.as_deref(), Some(path), "{e:?}"),
        other => panic!("expected invalid {path}: {other:?}"),
    }
}

#[tokio::test]
async fn appointment_types_give_the_duration_and_stay_in_their_organization() {
    let (tv, fd, loc, pr, patient) = setup("UTC", &every_day(8 * 60, 12 * 60)).await;
    let v = &tv.vault;
    let p = fd.default_purpose();
    let org_b = v.add_unit("organization", "Other Clinic", None, None, None).await.expect("org b");
    let (admin_b, _) = tv.staff_in("practice_admin", Some(&org_b)).await.expect("admin b");
    let t = v.add_appointment_type(&fd, "default", "new-patient", "New patient", 60).await.expect("type");
    assert_eq!((t.organization_id.as_str(), t.code.as_str(), t.minutes, t.active), ("default", "new-patient", 60, true));
    // The same code in another organization is another type.
    let tb = v.add_appointment_type(&admin_b, &org_b, "new-patient", "New patient", 45).await.expect("type b");
    // Each sees its own organization's types only.
    let mine: Vec<String> = v.appointment_types(&fd).await.expect("types").into_iter().map(|t| t.id).collect();
    assert_eq!(mine, vec![t.id.clone()]);
    let theirs: Vec<String> = v.appointment_types(&admin_b).await.expect("types").into_iter().map(|t| t.id).collect();
    assert_eq!(theirs, vec![tb.id.clone()]);

    // Refusals: a duplicate code (conflict, audited), another organization (forbidden,
    // audited), bad input and an unknown organization; nothing is written.
    let before = snapshot(&tv).await;
    match v.add_appointment_type(&fd, "default", "new-patient", "Again", 30).await {
        Err(CoreError::Conflict(m)) => assert!(m.contains("code"), "{m}"),
        other => panic!("duplicate code: {other:?}"),
    }
    nothing_written(&tv, &before, Some(("create", "conflict", "AppointmentType"))).await;
    let before = snapshot(&tv).await;
    assert!(matches!(v.add_appointment_type(&fd, &org_b, "walk-in", "Walk-in", 15).await, Err(CoreError::Forbidden { .. })));
    nothing_written(&tv, &before, Some(("access-denied", "denied", "AppointmentType"))).await;
    let before = snapshot(&tv).await;
    invalid_at(v.add_appointment_type(&fd, "default", "New Patient", "New", 30).await, "code");
    invalid_at(v.add_appointment_type(&fd, "default", "odd", "Odd", 7).await, "minutes");
    invalid_at(v.add_appointment_type(&fd, "default", "long", "Long", 485).await, "minutes");
    invalid_at(v.add_appointment_type(&fd, "default", "blank", "  ", 30).await, "name");
    assert!(matches!(v.add_appointment_type(&fd, "org-nowhere", "x", "X", 30).await, Err(CoreError::NotFound { .. })));
    let after = snapshot(&tv).await;
    assert_eq!(after.0, before.0);
    assert_eq!(after.1, before.1 + 4, "each invalid type is audited");

    // The duration comes from the type.
    let nine = midnight_in(&tv, 2) + 9 * HOUR;
    let a = v
        .book(&fd, p, &BookRequest { type_id: Some(t.id.clone()), ..booking(&patient, &pr, &loc, nine, None) }, false)
        .await
        .expect("typed");
    assert_eq!((a.end - a.start, a.type_id.as_deref()), (60 * MINUTE, Some(t.id.as_str())));
    let fhir = a.to_fhir();
    assert_eq!(fhir["minutesDuration"], 60);
    assert_eq!(fhir["appointmentType"]["coding"][0]["code"], t.id.as_str());
    // Naming the same duration is fine; another one is refused, audited, nothing booked.
    let ten = nine + HOUR;
    v.book(&fd, p, &BookRequest { type_id: Some(t.id.clone()), ..booking(&patient, &pr, &loc, ten, Some(60)) }, false)
        .await
        .expect("same minutes");
    let eleven = ten + HOUR;
    let before = snapshot(&tv).await;
    let r = v.book(&fd, p, &BookRequest { type_id: Some(t.id.clone()), ..booking(&patient, &pr, &loc, eleven, Some(30)) }, false).await;
    invalid_at(r, "minutesDuration");
    nothing_written(&tv, &before, Some(("create", "invalid", "Appointment"))).await;
    // Another organization's type, an unknown type, neither type nor duration: refused.
    for ty in [Some(tb.id.clone()), Some("0".repeat(24))] {
        let before = snapshot(&tv).await;
        invalid_at(
            v.book(&fd, p, &BookRequest { type_id: ty, ..booking(&patient, &pr, &loc, eleven, None) }, false).await,
            "appointmentType",
        );
        nothing_written(&tv, &before, Some(("create", "invalid", "Appointment"))).await;
    }
    let before = snapshot(&tv).await;
    invalid_at(v.book(&fd, p, &booking(&patient, &pr, &loc, eleven, None), false).await, "minutesDuration");
    nothing_written(&tv, &before, Some(("create", "invalid", "Appointment"))).await;
}

#[tokio::test]
async fn a_room_is_never_double_booked_and_belongs_to_its_location() {
    let (tv, fd, loc, pr, patient) = setup("UTC", &every_day(8 * 60, 12 * 60)).await;
    let v = &tv.vault;
    let p = fd.default_purpose();
    let (admin, _) = tv.staff(Role::PracticeAdmin).await.expect("admin");
    let (doc, _) = tv.staff(Role::Physician).await.expect("physician");
    let pr2 = practitioner(&tv, &admin, &loc, 2, &every_day(8 * 60, 12 * 60)).await;
    let room = v.add_unit("room", "Room 1", Some("default"), Some(&loc), None).await.expect("room");
    let elsewhere = v.add_unit("location", "Elm Street", Some("default"), None, Some("UTC")).await.expect("location 2");
    let other_room = v.add_unit("room", "Elm 1", Some("default"), Some(&elsewhere), None).await.expect("room 2");
    let ten = midnight_in(&tv, 2) + 10 * HOUR;
    let with_room = |pr: &str, start: i64, minutes: u16, room: &str| BookRequest {
        room_id: Some(room.to_string()),
        ..booking(&patient, pr, &loc, start, Some(minutes))
    };
    let a = v.book(&fd, p, &with_room(&pr, ten, 60, &room), false).await.expect("10:00-11:00 in room 1");
    assert_eq!(a.room_id.as_deref(), Some(room.as_str()));
    assert_eq!(a.to_fhir()["participant"][3]["actor"]["reference"], format!("Location/{room}"));
    // Another practitioner, overlapping (10:30-11:00): refused; so is an overbooking.
    let before = snapshot(&tv).await;
    match v.book(&fd, p, &with_room(&pr2, ten + 30 * MINUTE, 30, &room), false).await {
        Err(CoreError::Conflict(m)) => assert!(m.contains("room"), "{m}"),
        other => panic!("{other:?}"),
    }
    nothing_written(&tv, &before, Some(("create", "conflict", "Appointment"))).await;
    let before = snapshot(&tv).await;
    assert!(matches!(v.book(&doc, doc.default_purpose(), &with_room(&pr, ten, 60, &room), true).await, Err(CoreError::Conflict(_))));
    nothing_written(&tv, &before, Some(("create", "conflict", "Appointment"))).await;
    // Adjacent (11:00) is fine, and the second practitioner's own time without the room too.
    v.book(&fd, p, &with_room(&pr2, ten + HOUR, 30, &room), false).await.expect("11:00 in room 1");
    v.book(&fd, p, &booking(&patient, &pr2, &loc, ten + 30 * MINUTE, Some(30)), false).await.expect("10:30 without a room");
    // A room of another location, an unknown room: refused, audited, nothing written.
    for bad_room in [other_room.as_str(), "room-nowhere"] {
        let before = snapshot(&tv).await;
        invalid_at(v.book(&fd, p, &with_room(&pr, ten - HOUR, 30, bad_room), false).await, "room");
        nothing_written(&tv, &before, Some(("create", "invalid", "Appointment"))).await;
    }
    // Cancelling frees the room.
    v.set_appointment_status(&fd, p, &a.id, "cancelled", Some("pat")).await.expect("cancel");
    v.book(&fd, p, &with_room(&pr2, ten, 30, &room), false).await.expect("room 1 free again at 10:00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_practitioners_race_for_one_room_exactly_one_gets_it() {
    let (tv, fd, loc, _, patient) = setup("UTC", &every_day(8 * 60, 12 * 60)).await;
    let (admin, _) = tv.staff(Role::PracticeAdmin).await.expect("admin");
    let room = tv.vault.add_unit("room", "Procedure", Some("default"), Some(&loc), None).await.expect("room");
    let mut practitioners = Vec::new();
    for n in 0..20 {
        practitioners.push(practitioner(&tv, &admin, &loc, 100 + n, &every_day(8 * 60, 12 * 60)).await);
    }
    let start = midnight_in(&tv, 2) + 9 * HOUR;
    let before = snapshot(&tv).await;
    let mut tasks = Vec::new();
    for pr in practitioners {
        let (v, fd, req) =
            (tv.vault.clone(), fd.clone(), BookRequest { room_id: Some(room.clone()), ..booking(&patient, &pr, &loc, start, Some(30)) });
        tasks.push(tokio::spawn(async move { v.book(&fd, fd.default_purpose(), &req, false).await }));
    }
    let (mut won, mut lost) = (0, 0);
    for t in tasks {
        match t.await.expect("task") {
            Ok(a) => {
                won += 1;
                assert_eq!(a.room_id.as_deref(), Some(room.as_str()));
            }
            Err(CoreError::Conflict(m)) => {
                assert!(m.contains("room"), "{m}");
                lost += 1;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((won, lost), (1, 19));
    // One appointment written; every booking audited (one success, nineteen conflicts).
    let (rows, audit) = snapshot(&tv).await;
    assert_eq!(rows[0], before.0[0] + 1);
    assert_eq!(audit, before.1 + 20);
    use sqlx::Row;
    let mut c = tv.raw().await.expect("raw");
    let held: i64 =
        sqlx::query("SELECT COUNT(*) FROM appointments WHERE room_id = $1").bind(room.clone()).fetch_one(&mut c).await.expect("n").get(0);
    assert_eq!(held, 1);
    let conflicts: i64 = sqlx::query("SELECT COUNT(*) FROM audit_events WHERE resource_type = 'Appointment' AND outcome = 'conflict'")
        .fetch_one(&mut c)
        .await
        .expect("n")
        .get(0);
    assert_eq!(conflicts, 19);
    assert!(tv.vault.verify_audit().await.expect("verify").intact());
}

#[tokio::test]
async fn a_weekly_series_keeps_its_local_time_across_the_autumn_change_all_or_nothing() {
    // America/New_York, 2030-11-03: 02:00 EDT falls back to 01:00 EST. Mondays 08:00-12:00.
    let (tv, fd, loc, pr, patient) =
        setup("America/New_York", &[WeeklyWindow { weekday: 1, start_minute: 8 * 60, end_minute: 12 * 60 }]).await;
    let v = &tv.vault;
    let p = fd.default_purpose();
    let first = utc("2030-10-21T13:00:00Z"); // 09:00 EDT
    let req = booking(&patient, &pr, &loc, first, Some(30));
    // The third Monday (after the change) is taken: nothing is booked and the date is named.
    let taken = v.book(&fd, p, &booking(&patient, &pr, &loc, utc("2030-11-04T14:00:00Z"), Some(30)), false).await.expect("09:00 EST");
    let before = snapshot(&tv).await;
    match v.book_series(&fd, p, &req, 1, 4).await {
        Err(CoreError::Conflict(m)) => assert!(m.contains("2030-11-04") && !m.contains("2030-10-28"), "{m}"),
        other => panic!("{other:?}"),
    }
    nothing_written(&tv, &before, Some(("create", "conflict", "Appointment"))).await;
    // Bad recurrences: refused, audited, nothing written.
    for (every, count, path) in [(0u8, 4u16, "everyWeeks"), (5, 4, "everyWeeks"), (1, 1, "count"), (1, 53, "count")] {
        let before = snapshot(&tv).await;
        invalid_at(v.book_series(&fd, p, &req, every, count).await, path);
        nothing_written(&tv, &before, Some(("create", "invalid", "Appointment"))).await;
    }
    // Once the Monday is free, the series books: 09:00 local each week, so 13:00Z then 14:00Z.
    v.set_appointment_status(&fd, p, &taken.id, "cancelled", Some("pat")).await.expect("free the Monday");
    let series = v.book_series(&fd, p, &req, 1, 4).await.expect("series");
    let starts: Vec<i64> = series.iter().map(|a| a.start).collect();
    assert_eq!(
        starts,
        vec![utc("2030-10-21T13:00:00Z"), utc("2030-10-28T13:00:00Z"), utc("2030-11-04T14:00:00Z"), utc("2030-11-11T14:00:00Z")]
    );
    let sid = series[0].series_id.clone().expect("series id");
    assert!(series.iter().all(|a| a.series_id.as_deref() == Some(sid.as_str()) && a.end - a.start == 30 * MINUTE && a.status == "booked"));
    let fhir = series[2].to_fhir();
    assert_eq!(fhir["identifier"][0]["value"], sid.as_str());
    assert_eq!(fhir["start"], "2030-11-04T14:00:00.000Z");
    // Every other week, three times: the 21st, 4th and 18th (at 09:00 EST after the change).
    let other = v.book_series(&fd, p, &BookRequest { start: utc("2030-10-21T14:00:00Z"), ..req.clone() }, 2, 3).await.expect("fortnightly");
    assert_eq!(
        other.iter().map(|a| a.start).collect::<Vec<_>>(),
        vec![utc("2030-10-21T14:00:00Z"), utc("2030-11-04T15:00:00Z"), utc("2030-11-18T15:00:00Z")]
    );
}

#[tokio::test]
async fn cancelling_a_series_cancels_only_its_future_booked_occurrences() {
    let (tv, fd, loc, pr, patient) = setup("UTC", &every_day(8 * 60, 12 * 60)).await;
    let v = &tv.vault;
    let p = fd.default_purpose();
    let start = midnight_in(&tv, 1) + 9 * HOUR;
    let series = v.book_series(&fd, p, &booking(&patient, &pr, &loc, start, Some(30)), 1, 4).await.expect("series");
    let sid = series[0].series_id.clone().expect("series id");
    // The second occurrence is checked in early; then time passes beyond the first one.
    v.set_appointment_status(&fd, p, &series[1].id, "arrived", None).await.expect("arrived");
    tv.clock.advance_secs(2 * 86_400);
    let (fd, _) = tv.staff(Role::FrontDesk).await.expect("front desk, signed in again");
    // A reason outside the list: refused, audited, nothing changed. Unknown series: not found.
    let before = snapshot(&tv).await;
    invalid_at(v.cancel_series(&fd, p, &sid, "because").await, "reason");
    nothing_written(&tv, &before, Some(("update", "invalid", "Appointment"))).await;
    let before = snapshot(&tv).await;
    assert!(matches!(v.cancel_series(&fd, p, &"0".repeat(24), "pat").await, Err(CoreError::NotFound { .. })));
    assert!(matches!(v.cancel_series(&fd, p, "not-a-series", "pat").await, Err(CoreError::NotFound { .. })));
    assert_eq!(snapshot(&tv).await.0, before.0);
    // Someone without the permission: refused and audited.
    let (auditor, _) = tv.staff(Role::Auditor).await.expect("auditor");
    let before = snapshot(&tv).await;
    assert!(matches!(v.cancel_series(&auditor, auditor.default_purpose(), &sid, "pat").await, Err(CoreError::Forbidden { .. })));
    nothing_written(&tv, &before, Some(("access-denied", "denied", "Appointment"))).await;
    // The past one and the checked-in one stay; the two future booked ones are cancelled.
    let audit = count(&tv, "audit_events").await;
    assert_eq!(v.cancel_series(&fd, p, &sid, "prov").await.expect("cancel"), 2);
    assert_eq!(count(&tv, "audit_events").await, audit + 2, "one record per cancelled occurrence");
    let mut statuses = Vec::new();
    for a in &series {
        statuses.push(v.read_appointment(&fd, p, &a.id).await.expect("read").status);
    }
    assert_eq!(statuses, vec!["booked", "arrived", "cancelled", "cancelled"]);
    let h = v.appointment_history(&fd, p, &series[3].id).await.expect("history");
    assert_eq!(h.last().map(|x| (x.2.as_str(), x.3.as_deref())), Some(("cancelled", Some("prov"))));
    // Nothing left to cancel.
    assert_eq!(v.cancel_series(&fd, p, &sid, "prov").await.expect("again"), 0);
}

#[tokio::test]
async fn freed_time_goes_to_the_waitlist_decline_passes_it_on_accept_books_it() {
    let (tv, fd, loc, pr, patient) = setup("UTC", &every_day(8 * 60, 12 * 60)).await;
    let v = &tv.vault;
    let p = fd.default_purpose();
    let w1 = new_patient(&tv, &fd, "Waitone").await;
    let w2 = new_patient(&tv, &fd, "Waittwo").await;
    let nine = midnight_in(&tv, 2) + 9 * HOUR;
    let a = v.book(&fd, p, &booking(&patient, &pr, &loc, nine, Some(30)), false).await.expect("booked at 09:00");
    let b = v.book(&fd, p, &booking(&patient, &pr, &loc, nine + HOUR, Some(30)), false).await.expect("booked at 10:00");
    let wait = |pid: &str| WaitlistRequest {
        patient_id: pid.into(),
        practitioner_id: pr.clone(),
        location_id: loc.clone(),
        minutes: 30,
        from: utc_date(nine - DAY),
        to: utc_date(nine + DAY),
    };
    // Bad entries: refused, audited, nothing written.
    let past = WaitlistRequest { from: utc_date(nine - 5 * DAY), to: utc_date(nine - 4 * DAY), ..wait(&w1) };
    let reversed = WaitlistRequest { from: utc_date(nine + DAY), to: utc_date(nine - DAY), ..wait(&w1) };
    for (req, path) in [(past, "to"), (reversed, "to"), (WaitlistRequest { minutes: 3, ..wait(&w1) }, "minutes")] {
        let before = snapshot(&tv).await;
        invalid_at(v.waitlist_add(&fd, p, &req).await, path);
        nothing_written(&tv, &before, Some(("create", "invalid", "Waitlist"))).await;
    }
    let e1 = v.waitlist_add(&fd, p, &wait(&w1)).await.expect("first on the list");
    tv.clock.advance_secs(1);
    let e2 = v.waitlist_add(&fd, p, &wait(&w2)).await.expect("second on the list");
    assert_eq!((e1.status.as_str(), e1.offered_start), ("waiting", None));
    let listed: Vec<String> = v.waitlist(&fd, p, &loc, Some("waiting")).await.expect("list").into_iter().map(|e| e.id).collect();
    assert_eq!(listed, vec![e1.id.clone(), e2.id.clone()]);
    invalid_at(v.waitlist(&fd, p, &loc, Some("pending")).await, "status");
    // No offer yet: answering is a conflict, audited, nothing written.
    let before = snapshot(&tv).await;
    assert!(matches!(v.answer_waitlist_offer(&fd, p, &e1.id, true).await, Err(CoreError::Conflict(_))));
    nothing_written(&tv, &before, Some(("update", "conflict", "Waitlist"))).await;

    // Cancelling 09:00 offers it to the longest waiting.
    v.set_appointment_status(&fd, p, &a.id, "cancelled", Some("pat")).await.expect("cancel 09:00");
    let x1 = entry(&tv, &fd, &loc, &e1.id).await;
    assert_eq!((x1.status.as_str(), x1.offered_start, x1.offered_end), ("offered", Some(nine), Some(nine + 30 * MINUTE)));
    assert_eq!(entry(&tv, &fd, &loc, &e2.id).await.status, "waiting");
    // Declining returns it to the list and offers the time to the next one.
    assert!(v.answer_waitlist_offer(&fd, p, &e1.id, false).await.expect("decline").is_none());
    let (x1, x2) = (entry(&tv, &fd, &loc, &e1.id).await, entry(&tv, &fd, &loc, &e2.id).await);
    assert_eq!((x1.status.as_str(), x1.offered_start, x1.offered_end), ("waiting", None, None));
    // The whole freed time is passed on.
    assert_eq!((x2.status.as_str(), x2.offered_start, x2.offered_end), ("offered", Some(nine), Some(nine + 30 * MINUTE)));
    // Accepting books it for the waiting patient and closes the entry.
    let booked = v.answer_waitlist_offer(&fd, p, &e2.id, true).await.expect("accept").expect("an appointment");
    assert_eq!((booked.patient_id.as_str(), booked.start, booked.end), (w2.as_str(), nine, nine + 30 * MINUTE));
    let x2 = entry(&tv, &fd, &loc, &e2.id).await;
    assert_eq!((x2.status.as_str(), x2.appointment_id.as_deref()), ("booked", Some(booked.id.as_str())));
    assert_eq!(v.read_appointment(&fd, p, &booked.id).await.expect("read").patient_id, w2);
    // A closed entry has no offer to answer.
    assert!(matches!(v.answer_waitlist_offer(&fd, p, &e2.id, true).await, Err(CoreError::Conflict(_))));

    // 10:00 is freed and offered to the first entry; meanwhile someone books it directly:
    // accepting is then a conflict, audited, nothing written, and the offer stays open.
    v.set_appointment_status(&fd, p, &b.id, "cancelled", Some("prov")).await.expect("cancel 10:00");
    assert_eq!(entry(&tv, &fd, &loc, &e1.id).await.offered_start, Some(nine + HOUR));
    let walk_in = new_patient(&tv, &fd, "Walkin").await;
    v.book(&fd, p, &booking(&walk_in, &pr, &loc, nine + HOUR, Some(30)), false).await.expect("taken meanwhile");
    let before = snapshot(&tv).await;
    match v.answer_waitlist_offer(&fd, p, &e1.id, true).await {
        Err(CoreError::Conflict(m)) => assert!(m.contains("already booked"), "{m}"),
        other => panic!("{other:?}"),
    }
    nothing_written(&tv, &before, Some(("update", "conflict", "Waitlist"))).await;
    assert_eq!(entry(&tv, &fd, &loc, &e1.id).await.status, "offered");
    // Unknown entries: not found.
    assert!(matches!(v.answer_waitlist_offer(&fd, p, &"0".repeat(24), true).await, Err(CoreError::NotFound { .. })));
    assert!(tv.vault.verify_audit().await.expect("verify").intact());
}

#[tokio::test]
async fn appointment_search_a_practitioners_day_filtered_by_organization() {
    let (tv, fd, loc, pr, patient) = setup("UTC", &every_day(8 * 60, 12 * 60)).await;
    let v = &tv.vault;
    let p = fd.default_purpose();
    let (admin, _) = tv.staff(Role::PracticeAdmin).await.expect("admin");
    let pr2 = practitioner(&tv, &admin, &loc, 2, &every_day(8 * 60, 12 * 60)).await;
    let day = midnight_in(&tv, 2);
    let mut mine = Vec::new();
    for h in [11, 9, 10] {
        mine.push(v.book(&fd, p, &booking(&patient, &pr, &loc, day + h * HOUR, Some(30)), false).await.expect("book"));
    }
    v.book(&fd, p, &booking(&patient, &pr2, &loc, day + 9 * HOUR, Some(30)), false).await.expect("another practitioner");
    v.book(&fd, p, &booking(&patient, &pr, &loc, day + DAY + 9 * HOUR, Some(30)), false).await.expect("the next day");
    v.set_appointment_status(&fd, p, &mine[0].id, "cancelled", Some("pat")).await.expect("cancel 11:00");
    let q = |pairs: &[(&str, String)]| pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<Vec<_>>();
    let date = utc_date(day);
    // The practitioner's day, in order of start, as one day or as a range.
    let audit = count(&tv, "audit_events").await;
    let found = v.search_appointments(&fd, p, &q(&[("practitioner", pr.clone()), ("date", date.clone())])).await.expect("day");
    assert_eq!(found.iter().map(|a| a.start).collect::<Vec<_>>(), vec![day + 9 * HOUR, day + 10 * HOUR, day + 11 * HOUR]);
    assert!(found.iter().all(|a| a.practitioner_id == pr));
    assert_eq!(count(&tv, "audit_events").await, audit + 1, "one audit record per search");
    assert_eq!(last_audit(&tv).await, ("search".into(), "success".into(), "Appointment".into()));
    let range =
        q(&[("practitioner", format!("Practitioner/{pr}")), ("date", format!("ge{date}")), ("date", format!("lt{}", utc_date(day + DAY)))]);
    let again = v.search_appointments(&fd, p, &range).await.expect("range");
    assert_eq!(again.iter().map(|a| &a.id).collect::<Vec<_>>(), found.iter().map(|a| &a.id).collect::<Vec<_>>());
    let booked = v
        .search_appointments(&fd, p, &q(&[("practitioner", pr.clone()), ("date", date.clone()), ("status", "booked".into())]))
        .await
        .expect("booked only");
    assert_eq!(booked.len(), 2);
    let whole_day =
        v.search_appointments(&fd, p, &q(&[("date", date.clone()), ("location", format!("Location/{loc}"))])).await.expect("location");
    assert_eq!(whole_day.len(), 4);
    let two = v.search_appointments(&fd, p, &q(&[("date", date.clone()), ("_count", "2".into())])).await.expect("count");
    assert_eq!(two.len(), 2);
    // Instants: [09:30, 10:30) holds the 10:00 appointment only.
    let instants = q(&[
        ("practitioner", pr.clone()),
        ("date", format!("ge{}", carevault_core::format_instant(day + 9 * HOUR + 30 * MINUTE))),
        ("date", format!("lt{}", carevault_core::format_instant(day + 10 * HOUR + 30 * MINUTE))),
    ]);
    assert_eq!(
        v.search_appointments(&fd, p, &instants).await.expect("instants").iter().map(|a| a.start).collect::<Vec<_>>(),
        vec![day + 10 * HOUR]
    );
    // The front desk of another organization sees none of these patients' appointments.
    let org_b = v.add_unit("organization", "Other Clinic", None, None, None).await.expect("org b");
    let (fd_b, _) = tv.staff_in("front_desk", Some(&org_b)).await.expect("front desk b");
    let theirs = v.search_appointments(&fd_b, fd_b.default_purpose(), &q(&[("practitioner", pr.clone()), ("date", date.clone())])).await;
    assert!(theirs.expect("search b").is_empty());
    // Without the permission: refused and audited.
    let (auditor, _) = tv.staff(Role::Auditor).await.expect("auditor");
    let before = snapshot(&tv).await;
    assert!(matches!(
        v.search_appointments(&auditor, auditor.default_purpose(), &q(&[("date", date.clone())])).await,
        Err(CoreError::Forbidden { .. })
    ));
    nothing_written(&tv, &before, Some(("access-denied", "denied", "Appointment"))).await;
    // Bad parameters: invalid, audited as a search, nothing written.
    let bad = [
        (q(&[("practitioner", pr.clone())]), "date"),
        (q(&[]), "date"),
        (q(&[("date", format!("ge{date}")), ("date", format!("lt{}", utc_date(day + 32 * DAY)))]), "date"),
        (q(&[("date", format!("ge{date}")), ("date", format!("lt{date}"))]), "date"),
        (q(&[("date", date.clone()), ("colour", "blue".into())]), "colour"),
        (q(&[("date", date.clone()), ("status", "tentative".into())]), "status"),
        (q(&[("date", date.clone()), ("_count", "0".into())]), "_count"),
        (q(&[("date", date.clone()), ("practitioner", "Practitioner/../x".into())]), "practitioner"),
        (q(&[("date", "2030-02-30".into())]), "date"),
    ];
    for (params, path) in bad {
        let before = snapshot(&tv).await;
        invalid_at(v.search_appointments(&fd, p, &params).await, path);
        nothing_written(&tv, &before, Some(("search", "invalid", "Appointment"))).await;
    }
    // Exactly 31 days is allowed.
    v.search_appointments(&fd, p, &q(&[("date", format!("ge{date}")), ("date", format!("lt{}", utc_date(day + 31 * DAY)))]))
        .await
        .expect("31 days");
}

/// Offers are made only when they can be accepted: a shorter entry gets freed time only when
/// its slot grid holds the start (its minutes divide the freed length), and time an overbooking
/// still holds is not offered at all.
#[tokio::test]
async fn the_waitlist_is_offered_only_time_it_can_book() {
    let (tv, fd, loc, pr, patient) = setup("UTC", &every_day(8 * 60, 12 * 60)).await;
    let v = &tv.vault;
    let p = fd.default_purpose();
    let (doc, _) = tv.staff(Role::Physician).await.expect("physician");
    let nine = midnight_in(&tv, 2) + 9 * HOUR;
    let wait = |pid: &str, minutes: u16| WaitlistRequest {
        patient_id: pid.into(),
        practitioner_id: pr.clone(),
        location_id: loc.clone(),
        minutes,
        from: utc_date(nine),
        to: utc_date(nine),
    };
    let (w20, w15) = (new_patient(&tv, &fd, "Twenty").await, new_patient(&tv, &fd, "Fifteen").await);
    let e20 = v.waitlist_add(&fd, p, &wait(&w20, 20)).await.expect("20 minutes");
    tv.clock.advance_secs(1);
    let e15 = v.waitlist_add(&fd, p, &wait(&w15, 15)).await.expect("15 minutes");
    // 09:30-10:00 is freed. The 20-minute grid (08:00, 08:20, ..., 09:20, 09:40) has no 09:30,
    // so the longer-waiting 20-minute entry is passed over; the 15-minute one books 09:30.
    let a = v.book(&fd, p, &booking(&patient, &pr, &loc, nine + 30 * MINUTE, Some(30)), false).await.expect("09:30");
    v.set_appointment_status(&fd, p, &a.id, "cancelled", Some("pat")).await.expect("cancel 09:30");
    assert_eq!(entry(&tv, &fd, &loc, &e20.id).await.status, "waiting");
    assert_eq!(entry(&tv, &fd, &loc, &e15.id).await.offered_start, Some(nine + 30 * MINUTE));
    let booked = v.answer_waitlist_offer(&fd, p, &e15.id, true).await.expect("accept").expect("appointment");
    assert_eq!((booked.patient_id.as_str(), booked.start, booked.end), (w15.as_str(), nine + 30 * MINUTE, nine + 45 * MINUTE));
    // 10:00-11:00 is booked and overbooked. Cancelling the overbooking frees nothing: no offer.
    // Cancelling the other one frees the hour, whose start the 20-minute grid holds (20 divides
    // 60): offered to the 20-minute entry, which books 10:00-10:20.
    let ten = nine + HOUR;
    let held = v.book(&fd, p, &booking(&patient, &pr, &loc, ten, Some(60)), false).await.expect("10:00-11:00");
    let over = v.book(&doc, doc.default_purpose(), &booking(&patient, &pr, &loc, ten, Some(60)), true).await.expect("overbooked");
    v.set_appointment_status(&fd, p, &over.id, "cancelled", Some("pat")).await.expect("cancel the overbooking");
    let x = entry(&tv, &fd, &loc, &e20.id).await;
    assert_eq!((x.status.as_str(), x.offered_start), ("waiting", None), "the time is still taken");
    v.set_appointment_status(&fd, p, &held.id, "cancelled", Some("prov")).await.expect("cancel 10:00");
    assert_eq!(entry(&tv, &fd, &loc, &e20.id).await.offered_start, Some(ten));
    let booked = v.answer_waitlist_offer(&fd, p, &e20.id, true).await.expect("accept").expect("appointment");
    assert_eq!((booked.patient_id.as_str(), booked.start, booked.end), (w20.as_str(), ten, ten + 20 * MINUTE));
}
