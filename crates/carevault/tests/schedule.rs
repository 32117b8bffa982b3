//! Scheduling through the core, on SQLite and (with CAREVAULT_TEST_DATABASE_URL) PostgreSQL:
//! one slot, fifty concurrent bookings, exactly one wins; bookings in the past or outside
//! availability are refused; slots across a daylight-saving change.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use carevault_core::{Actor, CoreError, PractitionerRequest};
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
    // 2027-03-14, America/Chicago: 02:00 CST jumps to 03:00 CDT.
    let (tv, fd, loc, pr, patient) = setup("America/Chicago", &[WeeklyWindow { weekday: 7, start_minute: 0, end_minute: 4 * 60 }]).await;
    let v = &tv.vault;
    let slots = v.free_slots(&fd, &pr, &loc, "2027-03-14", 1, 60).await.expect("slots");
    let starts: Vec<i64> = slots.iter().map(|s| s.start).collect();
    assert_eq!(starts, vec![utc("2027-03-14T06:00:00Z"), utc("2027-03-14T08:00:00Z")], "00:00 CST and 03:00 CDT");
    // 01:00 CST would end at 02:00, which does not exist that night.
    assert!(matches!(
        v.book_appointment(&fd, fd.default_purpose(), &patient, &pr, &loc, utc("2027-03-14T07:00:00Z"), 60).await,
        Err(CoreError::Invalid(_))
    ));
    let a = v.book_appointment(&fd, fd.default_purpose(), &patient, &pr, &loc, utc("2027-03-14T08:00:00Z"), 60).await.expect("03:00 CDT");
    assert_eq!(a.end - a.start, 3_600_000_000);
    // A week later the same wall-clock window is an hour earlier in UTC.
    let later = v.free_slots(&fd, &pr, &loc, "2027-03-21", 1, 60).await.expect("slots");
    assert_eq!(later[0].start, utc("2027-03-21T05:00:00Z"));
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
