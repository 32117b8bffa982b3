//! Free-slot computation: weekly availability in a location's wall-clock time, turned into UTC
//! slots across daylight-saving changes, minus closures (holidays, leave) and busy time
//! (existing appointments). Pure: the store and the booking rules live elsewhere.
//!
//! Appointments are stored in UTC and shown in the location's zone. A wall-clock time that does
//! not exist (the hour skipped in spring) starts no slot, and no slot spans a change of offset,
//! so every slot lasts exactly its nominal duration.

pub use jiff::civil::Date;
use jiff::civil::{DateTime, Time};
use jiff::tz::TimeZone;

use crate::error::InputError;
use crate::practice::TimeZoneName;

/// One weekly opening window in local time: `weekday` 1 = Monday … 7 = Sunday, minutes after
/// local midnight, `start < end <= 1440`. Breaks are the gaps between windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WeeklyWindow {
    pub weekday: u8,
    pub start_minute: u16,
    pub end_minute: u16,
}

/// A half-open interval of Unix microseconds (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Interval {
    pub start: i64,
    pub end: i64,
}

impl Interval {
    pub fn overlaps(&self, other: &Interval) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// What to compute slots for.
#[derive(Debug, Clone)]
pub struct SlotQuery<'a> {
    pub windows: &'a [WeeklyWindow],
    pub time_zone: &'a TimeZoneName,
    /// First local date, and how many days (at most 62).
    pub from: Date,
    pub days: u16,
    pub duration_minutes: u16,
    /// Holidays, leave: no slot overlaps these.
    pub closed: &'a [Interval],
    /// Existing appointments of the provider or room.
    pub busy: &'a [Interval],
    /// No slot starts before this instant (now).
    pub not_before: i64,
}

pub fn check_windows(windows: &[WeeklyWindow]) -> Result<(), InputError> {
    for (i, w) in windows.iter().enumerate() {
        let path = format!("windows[{i}]");
        if !(1..=7).contains(&w.weekday) {
            return Err(InputError::value(&path, "weekday is 1 (Monday) to 7 (Sunday)"));
        }
        if w.start_minute >= w.end_minute || w.end_minute > 1440 {
            return Err(InputError::value(&path, "a window starts before it ends, within the day (minutes 0 to 1440)"));
        }
        for (j, o) in windows.iter().enumerate().skip(i + 1) {
            if o.weekday == w.weekday && w.start_minute < o.end_minute && o.start_minute < w.end_minute {
                return Err(InputError::value(&format!("windows[{j}]"), "overlaps another window of the same day"));
            }
        }
    }
    Ok(())
}

fn micros(ts: jiff::Timestamp) -> i64 {
    ts.as_microsecond()
}

/// The UTC instant of a local wall-clock time, or `None` when the time is skipped (spring
/// forward). A repeated time (fall back) is its first occurrence.
fn instant(tz: &TimeZone, date: Date, minute: u16) -> Option<i64> {
    let dt = if minute >= 1440 {
        DateTime::from_parts(date.tomorrow().ok()?, Time::midnight())
    } else {
        let t = Time::new(i8::try_from(minute / 60).ok()?, i8::try_from(minute % 60).ok()?, 0, 0).ok()?;
        DateTime::from_parts(date, t)
    };
    let amb = tz.to_ambiguous_timestamp(dt);
    if matches!(amb.offset(), jiff::tz::AmbiguousOffset::Gap { .. }) {
        return None;
    }
    amb.earlier().ok().map(micros)
}

/// An instant with a time zone (RFC 3339), as Unix microseconds.
pub fn parse_instant(path: &str, s: &str) -> Result<i64, InputError> {
    s.trim()
        .parse::<jiff::Timestamp>()
        .map(micros)
        .map_err(|_| InputError::value(path, "an instant with a time zone, e.g. 2027-03-14T08:00:00Z"))
}

/// A local calendar date given as `YYYY-MM-DD`.
pub fn parse_date(path: &str, s: &str) -> Result<Date, InputError> {
    s.trim().parse::<Date>().map_err(|_| InputError::value(path, "a date YYYY-MM-DD"))
}

/// The local date, in `tz`, of an instant (Unix microseconds).
pub fn local_date(tz: &TimeZoneName, micros: i64) -> Option<Date> {
    let zone = TimeZone::get(tz.as_str()).ok()?;
    Some(zone.to_datetime(jiff::Timestamp::from_microsecond(micros).ok()?).date())
}

/// The instant local midnight of `date` begins in `tz` (the first one, if it repeats).
pub fn local_midnight(tz: &TimeZoneName, date: Date) -> Option<i64> {
    let zone = TimeZone::get(tz.as_str()).ok()?;
    zone.to_ambiguous_timestamp(date.to_datetime(Time::midnight())).compatible().ok().map(micros)
}

/// The UTC instant (Unix microseconds) of a local wall-clock time `minute` after midnight of
/// `date` in `tz`, or `None` when that time is skipped (spring forward); a repeated time (fall
/// back) is its first occurrence.
pub fn local_instant(tz: &TimeZoneName, date: Date, minute: u16) -> Option<i64> {
    instant(&TimeZone::get(tz.as_str()).ok()?, date, minute)
}

/// The local date and minute after local midnight, in `tz`, of an instant (Unix microseconds).
pub fn local_date_minute(tz: &TimeZoneName, micros: i64) -> Option<(Date, u16)> {
    let zone = TimeZone::get(tz.as_str()).ok()?;
    let dt = zone.to_datetime(jiff::Timestamp::from_microsecond(micros).ok()?);
    let minute = u16::try_from(i32::from(dt.hour()) * 60 + i32::from(dt.minute())).ok()?;
    Some((dt.date(), minute))
}

/// The starts of a weekly recurring series: `count` occurrences every `every_weeks` weeks at
/// the same local wall-clock time as `first` in `tz` (so a 09:00 series stays at 09:00 across a
/// DST change). A local time that does not exist on a day (spring-forward gap) is refused.
pub fn weekly_series(tz: &TimeZoneName, first: i64, every_weeks: u8, count: u16) -> Result<Vec<i64>, InputError> {
    if !(1..=4).contains(&every_weeks) {
        return Err(InputError::value("everyWeeks", "between 1 and 4"));
    }
    if !(2..=52).contains(&count) {
        return Err(InputError::value("count", "between 2 and 52 occurrences"));
    }
    let zone = TimeZone::get(tz.as_str()).map_err(|_| InputError::value("timeZone", "unknown time zone"))?;
    let start = jiff::Timestamp::from_microsecond(first).map_err(|_| InputError::value("start", "out of range"))?;
    let local = zone.to_datetime(start);
    let mut out = Vec::with_capacity(usize::from(count));
    for k in 0..i64::from(count) {
        let day = local
            .date()
            .checked_add(jiff::Span::new().weeks(k * i64::from(every_weeks)))
            .map_err(|_| InputError::value("count", "the series runs out of the calendar"))?;
        let dt = day.to_datetime(local.time());
        let ts = zone
            .to_ambiguous_timestamp(dt)
            .unambiguous()
            .map_err(|_| InputError::value("start", format!("{dt} does not exist or repeats in {} (a DST change)", tz.as_str())))?;
        out.push(micros(ts));
    }
    Ok(out)
}

/// Appointment statuses (FHIR `AppointmentStatus` codes) and the moves allowed between them.
pub const STATUSES: &[&str] = &["booked", "arrived", "checked-in", "fulfilled", "cancelled", "noshow"];

/// Whether an appointment may go from `from` to `to`: booked → arrived → checked-in (in the
/// room) → fulfilled; booked or arrived → cancelled; booked → no-show.
pub fn transition_allowed(from: &str, to: &str) -> bool {
    matches!(
        (from, to),
        ("booked", "arrived" | "cancelled" | "noshow") | ("arrived", "checked-in" | "cancelled") | ("checked-in", "fulfilled")
    )
}

/// Why an appointment was cancelled (HL7 appointment-cancellation-reason, a subset).
pub const CANCEL_REASONS: &[&str] = &["pat", "prov", "maint", "oth"];

/// A booking request parsed from a FHIR Appointment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppointmentRequest {
    pub patient_id: String,
    pub practitioner_id: String,
    pub location_id: String,
    /// Unix microseconds.
    pub start: i64,
    pub minutes: u16,
}

fn reference_id<'a>(v: &'a serde_json::Value, path: &str, kind: &str) -> Result<Option<&'a str>, InputError> {
    let Some(r) = v.get("reference") else { return Ok(None) };
    let r = r.as_str().ok_or_else(|| InputError::new(crate::error::IssueCode::Structure, Some(path.to_string()), "a string"))?;
    match r.split_once('/') {
        Some((k, id)) if k == kind => {
            let ok = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if ok {
                Ok(Some(id))
            } else {
                Err(InputError::value(path, "not a valid id"))
            }
        }
        _ => Ok(None),
    }
}

/// Parses the FHIR Appointment a client posts to book: status `booked`, `start` and `end` with
/// a time zone, and one Patient, one Practitioner and one Location participant.
pub fn parse_appointment(body: &[u8]) -> Result<AppointmentRequest, InputError> {
    use crate::error::IssueCode;
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| InputError::new(IssueCode::Structure, None, "the body is not valid JSON"))?;
    let obj = v.as_object().ok_or_else(|| InputError::new(IssueCode::Structure, None, "the body must be a JSON object"))?;
    if obj.get("resourceType").and_then(|t| t.as_str()) != Some("Appointment") {
        return Err(InputError::value("Appointment.resourceType", "must be Appointment"));
    }
    const SUPPORTED: &[&str] = &["resourceType", "meta", "text", "status", "start", "end", "minutesDuration", "participant"];
    if obj.keys().any(|k| !SUPPORTED.contains(&k.as_str())) {
        return Err(crate::patient::unsupported_element("Appointment", SUPPORTED));
    }
    if obj.get("status").and_then(|s| s.as_str()) != Some("booked") {
        return Err(InputError::value("Appointment.status", "a new appointment is booked"));
    }
    let instant = |name: &str| -> Result<i64, InputError> {
        let path = format!("Appointment.{name}");
        let s =
            obj.get(name).and_then(|s| s.as_str()).ok_or_else(|| InputError::new(IssueCode::Required, Some(path.clone()), "required"))?;
        s.parse::<jiff::Timestamp>()
            .map(|t| t.as_microsecond())
            .map_err(|_| InputError::value(&path, "an instant with a time zone, e.g. 2027-03-14T08:00:00Z"))
    };
    let start = instant("start")?;
    let end = instant("end")?;
    let span = end - start;
    if span <= 0 || span % 60_000_000 != 0 || !(5..=480).contains(&(span / 60_000_000)) {
        return Err(InputError::value("Appointment.end", "after start, by 5 to 480 whole minutes"));
    }
    let minutes = u16::try_from(span / 60_000_000).map_err(|_| InputError::value("Appointment.end", "too long"))?;
    if let Some(d) = obj.get("minutesDuration") {
        if d.as_i64() != Some(i64::from(minutes)) {
            return Err(InputError::value("Appointment.minutesDuration", "must equal end - start"));
        }
    }
    let parts = obj.get("participant").and_then(|p| p.as_array()).ok_or_else(|| {
        InputError::new(IssueCode::Required, Some("Appointment.participant".into()), "a Patient, a Practitioner and a Location participant")
    })?;
    let (mut patient, mut practitioner, mut location) = (None, None, None);
    for (i, p) in parts.iter().enumerate() {
        let path = format!("Appointment.participant[{i}].actor");
        let actor = p.get("actor").ok_or_else(|| InputError::new(IssueCode::Required, Some(path.clone()), "required"))?;
        let found = [("Patient", &mut patient), ("Practitioner", &mut practitioner), ("Location", &mut location)];
        let mut matched = false;
        for (kind, slot) in found {
            if let Some(id) = reference_id(actor, &format!("{path}.reference"), kind)? {
                if slot.is_some() {
                    return Err(InputError::value(&path, format!("only one {kind} participant")));
                }
                *slot = Some(id.to_string());
                matched = true;
            }
        }
        if !matched {
            return Err(InputError::value(&path, "a reference to Patient/, Practitioner/ or Location/"));
        }
    }
    let need = |v: Option<String>, kind: &str| {
        v.ok_or_else(|| {
            InputError::new(IssueCode::Required, Some("Appointment.participant".into()), format!("a {kind} participant is required"))
        })
    };
    Ok(AppointmentRequest {
        patient_id: need(patient, "Patient")?,
        practitioner_id: need(practitioner, "Practitioner")?,
        location_id: need(location, "Location")?,
        start,
        minutes,
    })
}

/// Free slots, in time order.
pub fn free_slots(q: &SlotQuery<'_>) -> Result<Vec<Interval>, InputError> {
    check_windows(q.windows)?;
    if !(5..=480).contains(&q.duration_minutes) {
        return Err(InputError::value("duration", "5 to 480 minutes"));
    }
    if q.days == 0 || q.days > 62 {
        return Err(InputError::value("days", "1 to 62 days"));
    }
    let tz = TimeZone::get(q.time_zone.as_str()).map_err(|_| InputError::value("time_zone", "unknown time zone"))?;
    let nominal = i64::from(q.duration_minutes) * 60_000_000;
    let mut out = Vec::new();
    let mut date = q.from;
    for _ in 0..q.days {
        let weekday = u8::try_from(date.weekday().to_monday_one_offset()).unwrap_or(0);
        let mut windows: Vec<&WeeklyWindow> = q.windows.iter().filter(|w| w.weekday == weekday).collect();
        windows.sort_by_key(|w| w.start_minute);
        for w in windows {
            let mut m = w.start_minute;
            while m + q.duration_minutes <= w.end_minute {
                let (Some(start), Some(end)) = (instant(&tz, date, m), instant(&tz, date, m + q.duration_minutes)) else {
                    m += q.duration_minutes;
                    continue;
                };
                let slot = Interval { start, end };
                let fits = end - start == nominal
                    && start >= q.not_before
                    && !q.closed.iter().any(|c| c.overlaps(&slot))
                    && !q.busy.iter().any(|b| b.overlaps(&slot));
                if fits {
                    out.push(slot);
                }
                m += q.duration_minutes;
            }
        }
        date = match date.tomorrow() {
            Ok(d) => d,
            Err(_) => break,
        };
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tz(name: &str) -> TimeZoneName {
        TimeZoneName::parse("tz", name).expect("zone")
    }

    fn utc(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().expect("timestamp").as_microsecond()
    }

    fn query<'a>(windows: &'a [WeeklyWindow], zone: &'a TimeZoneName, from: Date, days: u16, minutes: u16) -> SlotQuery<'a> {
        SlotQuery { windows, time_zone: zone, from, days, duration_minutes: minutes, closed: &[], busy: &[], not_before: i64::MIN }
    }

    #[test]
    fn a_morning_in_winter_and_in_summer() {
        let chicago = tz("America/Chicago");
        let w = [WeeklyWindow { weekday: 1, start_minute: 9 * 60, end_minute: 12 * 60 }];
        let jan = free_slots(&query(&w, &chicago, Date::new(2026, 1, 5).expect("monday"), 1, 30)).expect("slots");
        assert_eq!(jan.len(), 6);
        assert_eq!(jan[0].start, utc("2026-01-05T15:00:00Z"), "09:00 CST is 15:00 UTC");
        let jul = free_slots(&query(&w, &chicago, Date::new(2026, 7, 6).expect("monday"), 1, 30)).expect("slots");
        assert_eq!(jul[0].start, utc("2026-07-06T14:00:00Z"), "09:00 CDT is 14:00 UTC");
        // Other weekdays have no window.
        assert!(free_slots(&query(&w, &chicago, Date::new(2026, 1, 6).expect("tuesday"), 1, 30)).expect("slots").is_empty());
    }

    #[test]
    fn spring_forward_skips_the_missing_hour() {
        // 2026-03-08, America/Chicago: 02:00 CST jumps to 03:00 CDT.
        let chicago = tz("America/Chicago");
        let w = [WeeklyWindow { weekday: 7, start_minute: 60, end_minute: 4 * 60 }];
        let s = free_slots(&query(&w, &chicago, Date::new(2026, 3, 8).expect("sunday"), 1, 60)).expect("slots");
        let starts: Vec<i64> = s.iter().map(|i| i.start).collect();
        // 01:00 CST (07:00Z) lasts until 02:00, which does not exist: skipped; 02:00 does not
        // exist; 03:00 CDT (08:00Z).
        assert_eq!(starts, vec![utc("2026-03-08T08:00:00Z")]);
        assert!(s.iter().all(|i| i.end - i.start == 3_600_000_000));
    }

    #[test]
    fn fall_back_never_gives_a_slot_across_the_change() {
        // 2026-11-01, America/Chicago: 02:00 CDT falls back to 01:00 CST.
        let chicago = tz("America/Chicago");
        let w = [WeeklyWindow { weekday: 7, start_minute: 0, end_minute: 3 * 60 }];
        let s = free_slots(&query(&w, &chicago, Date::new(2026, 11, 1).expect("sunday"), 1, 60)).expect("slots");
        let starts: Vec<i64> = s.iter().map(|i| i.start).collect();
        // 00:00 CDT (05:00Z) to 01:00 CDT (06:00Z); 01:00 to 02:00 would last two hours: skipped;
        // 02:00 CST (08:00Z) to 03:00 CST (09:00Z).
        assert_eq!(starts, vec![utc("2026-11-01T05:00:00Z"), utc("2026-11-01T08:00:00Z")]);
        assert!(s.iter().all(|i| i.end - i.start == 3_600_000_000));
        // The weekday after the change is back to one slot per hour at the new offset.
        let next = free_slots(&query(&w, &chicago, Date::new(2026, 11, 8).expect("sunday"), 1, 60)).expect("slots");
        assert_eq!(next.len(), 3);
        assert_eq!(next[0].start, utc("2026-11-08T06:00:00Z"));
    }

    #[test]
    fn busy_closed_and_past_time_are_removed() {
        let berlin = tz("Europe/Berlin");
        let w = [
            WeeklyWindow { weekday: 2, start_minute: 8 * 60, end_minute: 10 * 60 },
            WeeklyWindow { weekday: 2, start_minute: 11 * 60, end_minute: 12 * 60 },
        ];
        let day = Date::new(2026, 2, 3).expect("tuesday");
        let all = free_slots(&query(&w, &berlin, day, 1, 30)).expect("slots");
        assert_eq!(all.len(), 6, "the break 10:00-11:00 has no slot");
        let busy = [Interval { start: utc("2026-02-03T07:15:00Z"), end: utc("2026-02-03T07:45:00Z") }];
        let q = SlotQuery { busy: &busy, ..query(&w, &berlin, day, 1, 30) };
        assert_eq!(free_slots(&q).expect("slots").len(), 4, "08:00 and 08:30 overlap the busy time");
        let closed = [Interval { start: utc("2026-02-03T00:00:00Z"), end: utc("2026-02-04T00:00:00Z") }];
        let q = SlotQuery { closed: &closed, ..query(&w, &berlin, day, 1, 30) };
        assert!(free_slots(&q).expect("slots").is_empty(), "a holiday closes the day");
        let q = SlotQuery { not_before: utc("2026-02-03T09:00:00Z"), ..query(&w, &berlin, day, 1, 30) };
        assert_eq!(free_slots(&q).expect("slots").len(), 2, "only the 11:00 window is still ahead");
    }

    #[test]
    fn status_flow() {
        assert!(transition_allowed("booked", "arrived"));
        assert!(transition_allowed("arrived", "checked-in"));
        assert!(transition_allowed("checked-in", "fulfilled"));
        assert!(transition_allowed("booked", "cancelled"));
        assert!(transition_allowed("booked", "noshow"));
        for (a, b) in
            [("fulfilled", "cancelled"), ("cancelled", "booked"), ("noshow", "arrived"), ("booked", "fulfilled"), ("arrived", "noshow")]
        {
            assert!(!transition_allowed(a, b), "{a} -> {b}");
        }
    }

    #[test]
    fn appointment_bodies() {
        let ok = serde_json::json!({"resourceType": "Appointment", "status": "booked",
            "start": "2027-03-14T03:00:00-05:00", "end": "2027-03-14T08:30:00Z",
            "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"},
                            {"actor": {"reference": "Practitioner/pr1"}, "status": "accepted"},
                            {"actor": {"reference": "Location/loc-1"}, "status": "accepted"}]});
        let r = parse_appointment(ok.to_string().as_bytes()).expect("ok");
        assert_eq!((r.patient_id.as_str(), r.minutes, r.start), ("p1", 30, utc("2027-03-14T08:00:00Z")));
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (serde_json::json!({"resourceType": "Patient"}), "Appointment.resourceType"),
            (
                {
                    let mut v = ok.clone();
                    v["status"] = "cancelled".into();
                    v
                },
                "Appointment.status",
            ),
            (
                {
                    let mut v = ok.clone();
                    v["end"] = "2027-03-14T08:00:00Z".into();
                    v
                },
                "Appointment.end",
            ),
            (
                {
                    let mut v = ok.clone();
                    v["start"] = "2027-03-14 08:00".into();
                    v
                },
                "Appointment.start",
            ),
            (
                {
                    let mut v = ok.clone();
                    v["minutesDuration"] = 45.into();
                    v
                },
                "Appointment.minutesDuration",
            ),
            (
                {
                    let mut v = ok.clone();
                    v["reasonCode"] = serde_json::json!([]);
                    v
                },
                // An element the server does not know is not named (it is the client's text).
                "Appointment",
            ),
            (
                {
                    let mut v = ok.clone();
                    v["participant"] = serde_json::json!([{"actor": {"reference": "Patient/p1"}}]);
                    v
                },
                "Appointment.participant",
            ),
            (
                {
                    let mut v = ok.clone();
                    v["participant"][0]["actor"]["reference"] = "Group/g1".into();
                    v
                },
                "Appointment.participant[0].actor",
            ),
        ];
        for (body, path) in cases {
            let e = parse_appointment(body.to_string().as_bytes()).expect_err(path);
            assert_eq!(e.path.as_deref(), Some(path), "{e:?}");
        }
        assert!(parse_appointment(b"{").is_err());
    }

    #[test]
    fn bad_input_is_refused_precisely() {
        let utc_zone = tz("UTC");
        let day = Date::new(2026, 2, 3).expect("day");
        let bad = |w: &[WeeklyWindow], minutes: u16, days: u16| free_slots(&query(w, &utc_zone, day, days, minutes)).expect_err("bad").path;
        let ok = [WeeklyWindow { weekday: 1, start_minute: 0, end_minute: 60 }];
        assert_eq!(bad(&[WeeklyWindow { weekday: 0, start_minute: 0, end_minute: 60 }], 30, 1).as_deref(), Some("windows[0]"));
        assert_eq!(bad(&[WeeklyWindow { weekday: 1, start_minute: 60, end_minute: 60 }], 30, 1).as_deref(), Some("windows[0]"));
        assert_eq!(bad(&[WeeklyWindow { weekday: 1, start_minute: 0, end_minute: 1441 }], 30, 1).as_deref(), Some("windows[0]"));
        let overlapping = [ok[0], WeeklyWindow { weekday: 1, start_minute: 30, end_minute: 90 }];
        assert_eq!(bad(&overlapping, 30, 1).as_deref(), Some("windows[1]"));
        assert_eq!(bad(&ok, 0, 1).as_deref(), Some("duration"));
        assert_eq!(bad(&ok, 30, 0).as_deref(), Some("days"));
        assert_eq!(bad(&ok, 30, 63).as_deref(), Some("days"));
    }

    proptest::proptest! {
        /// Whatever the zone, date and windows: every slot lasts exactly its duration, starts at a
        /// wall-clock time inside a window of its local weekday, and slots never overlap.
        #[test]
        fn slots_are_exact_and_disjoint(
            zone in proptest::sample::select(vec!["America/Chicago", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]),
            day in 0i64..730,
            start in 0u16..1380,
            len in 5u16..600,
            minutes in proptest::sample::select(vec![10u16, 15, 20, 30, 45, 60]),
        ) {
            let zone = tz(zone);
            let end = (start + len).min(1440);
            let windows: Vec<WeeklyWindow> = (1..=7).map(|d| WeeklyWindow { weekday: d, start_minute: start, end_minute: end }).collect();
            let from = Date::new(2026, 1, 1).expect("date").checked_add(jiff::Span::new().days(day)).expect("date");
            let slots = free_slots(&query(&windows, &zone, from, 3, minutes)).expect("slots");
            let tzz = TimeZone::get(zone.as_str()).expect("zone");
            for w in slots.windows(2) {
                proptest::prop_assert!(w[0].end <= w[1].start);
            }
            for s in &slots {
                proptest::prop_assert_eq!(s.end - s.start, i64::from(minutes) * 60_000_000);
                let local = tzz.to_datetime(jiff::Timestamp::from_microsecond(s.start).expect("ts"));
                let m = u16::try_from(i32::from(local.hour()) * 60 + i32::from(local.minute())).expect("minute");
                proptest::prop_assert!(m >= start && m + minutes <= end, "{m} not in {start}..{end}");
            }
        }
    }

    #[test]
    fn weekly_series_keeps_local_time_across_dst() {
        let tz = TimeZoneName::parse("tz", "America/New_York").unwrap();
        // 2026-10-27 09:00 EDT (UTC-4) = 13:00 UTC; DST ends 2026-11-01.
        let first = parse_instant("start", "2026-10-27T13:00:00Z").unwrap();
        let s = weekly_series(&tz, first, 1, 3).unwrap();
        assert_eq!(s[1] - s[0], (7 * 24 + 1) * 3_600_000_000, "the week holding the change is an hour longer");
        assert_eq!(s[2] - s[1], 7 * 24 * 3_600_000_000);
        assert!(weekly_series(&tz, first, 0, 3).is_err());
        assert!(weekly_series(&tz, first, 1, 1).is_err());
        assert!(weekly_series(&tz, first, 1, 53).is_err());
        // 02:30 on 2027-03-14 does not exist in New York.
        let gap = parse_instant("start", "2027-03-07T07:30:00Z").unwrap();
        assert!(weekly_series(&tz, gap, 1, 2).is_err());
    }
}
