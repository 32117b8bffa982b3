//! Scenario 5 (`schedule`): booking a clinic's calendar and reading its day and week views,
//! against plain appointment tables.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use carevault_core::{Actor, BookRequest, Clock, PractitionerRequest};
use carevault_domain::practice::TimeZoneName;
use carevault_domain::schedule::{local_date, WeeklyWindow};
use carevault_domain::Role;
use sqlx::{AnyPool, Executor, Row};

use crate::people::{word, Rng};
use crate::{baseline_pool, figure, file_mb, measure, pick, plain_writer, progress, Bench, CONCURRENT, PLAIN_BATCH, SEED_TASKS};

/// Patients seeded by `schedule` when `--patients` is not given.
pub(crate) const SCHEDULE_PATIENTS: usize = 10_000;
/// Practitioners of the benchmark clinic, all working at one location (UTC).
const PRACTITIONERS: usize = 20;
/// Their availability: Monday to Friday, 08:00 to 16:00, booked in 30-minute slots.
const OPENS_MINUTE: u16 = 8 * 60;
const CLOSES_MINUTE: u16 = 16 * 60;
pub(crate) const SLOT_MINUTES: u16 = 30;
const WORKDAYS: usize = 5;
const SLOTS_PER_DAY: usize = ((CLOSES_MINUTE - OPENS_MINUTE) / SLOT_MINUTES) as usize;
/// Appointments the whole clinic holds in a day and in a week when fully booked.
const SLOTS_PER_CLINIC_DAY: usize = PRACTITIONERS * SLOTS_PER_DAY;
pub(crate) const SLOTS_PER_WEEK: usize = SLOTS_PER_CLINIC_DAY * WORKDAYS;
/// Distinct day views the day loop cycles through.
const VIEW_SET: usize = 512;
/// `Vault::search_appointments` reads four times its default page of 100 (some rows may be
/// hidden from the actor); the plain query reads as many.
const VIEW_LIMIT: i64 = 400;
pub(crate) const DAY_US: i64 = 86_400_000_000;
pub(crate) const MINUTE_US: i64 = 60_000_000;
/// The store's search query for a practitioner's appointments in a time range (its text and
/// parameter order), run as the plain baseline.
const VIEW_SQL: &str =
    "SELECT * FROM appointments WHERE start_at >= $1 AND start_at < $2 AND practitioner_id = $3 ORDER BY start_at, id LIMIT $4";
/// The overlap check a booking runs inside the write transaction (the store's text).
/// `start_at` is bounded on both sides (an appointment lasts at most 480 minutes).
const OVERLAP_SQL: &str = "SELECT COUNT(*) AS n FROM appointments WHERE practitioner_id = $1 AND start_at < $3 \
                           AND start_at > $2 - 28800000000 AND end_at > $2 AND status NOT IN ('cancelled', 'noshow', 'entered-in-error')";

/// The benchmark clinic: one location, its practitioners and the calendar the bookings fill.
pub(crate) struct Clinic {
    pub(crate) location: String,
    practitioners: Vec<String>,
    /// The calendar's first Monday (days since 1970-01-01), at least two days ahead.
    first_monday: i64,
}

impl Clinic {
    /// The `d`-th working day of the calendar, in days since 1970-01-01.
    fn workday(&self, d: usize) -> i64 {
        self.first_monday + (d / WORKDAYS) as i64 * 7 + (d % WORKDAYS) as i64
    }

    fn practitioner(&self, i: usize) -> Result<&str> {
        self.practitioners.get(i % self.practitioners.len().max(1)).map(String::as_str).context("no practitioners")
    }

    /// The `k`-th slot of the calendar, in time order (every practitioner's 08:00 on the first
    /// Monday, then everyone's 08:30, …): (practitioner, start in Unix microseconds).
    pub(crate) fn slot(&self, k: usize) -> Result<(&str, i64)> {
        let day = k / SLOTS_PER_CLINIC_DAY;
        let r = k % SLOTS_PER_CLINIC_DAY;
        let minute = i64::from(OPENS_MINUTE) + (r / PRACTITIONERS) as i64 * i64::from(SLOT_MINUTES);
        Ok((self.practitioner(r % PRACTITIONERS)?, self.workday(day) * DAY_US + minute * MINUTE_US))
    }

    /// A booking of the `k`-th slot for one of `patients` (spread over the set).
    fn request(&self, k: usize, patients: &[String]) -> Result<BookRequest> {
        let (practitioner, start) = self.slot(k)?;
        let patient = pick(patients, (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11)?;
        Ok(BookRequest {
            patient_id: patient.to_string(),
            practitioner_id: practitioner.to_string(),
            location_id: self.location.clone(),
            start,
            minutes: Some(SLOT_MINUTES),
            ..Default::default()
        })
    }
}

/// `YYYY-MM-DD` of a day given in days since 1970-01-01.
pub(crate) fn utc_date(day: i64) -> Result<String> {
    local_date(&TimeZoneName::utc(), day * DAY_US).map(|d| d.to_string()).context("date out of range")
}

/// A valid NPI: `1`, eight digits, and the Luhn check digit over the prefix 80840 and the first
/// nine digits.
fn npi(i: usize) -> String {
    let payload = format!("1{:08}", 45_000_000 + i);
    let sum: u32 = format!("80840{payload}")
        .bytes()
        .rev()
        .enumerate()
        .map(|(j, b)| {
            let d = u32::from(b.saturating_sub(b'0'));
            match (j % 2 == 0, d * 2) {
                (true, x) if x > 9 => x - 9,
                (true, x) => x,
                (false, _) => d,
            }
        })
        .sum();
    format!("{payload}{}", (10 - sum % 10) % 10)
}

/// The clinic through the core: a location (UTC), [`PRACTITIONERS`] practitioners added by a
/// practice administrator, their weekly availability set by the front desk. Returns the
/// clinic and the front-desk actor that books and views the schedule.
pub(crate) async fn open_clinic(b: &Bench) -> Result<(Clinic, Actor)> {
    let v = &b.tv.vault;
    let (admin, _) = b.tv.staff(Role::PracticeAdmin).await?;
    let (desk, _) = b.tv.staff(Role::FrontDesk).await?;
    let location = v.add_unit("location", "Bench Clinic", Some("default"), None, Some("UTC")).await?;
    let weekdays = u8::try_from(WORKDAYS).context("workdays")?;
    let hours: Vec<WeeklyWindow> =
        (1..=weekdays).map(|d| WeeklyWindow { weekday: d, start_minute: OPENS_MINUTE, end_minute: CLOSES_MINUTE }).collect();
    let mut practitioners = Vec::with_capacity(PRACTITIONERS);
    for i in 0..PRACTITIONERS {
        let mut r = Rng::new(1_000_000 + i as u64);
        let req = PractitionerRequest {
            npi: npi(i),
            family: word(&mut r, 2, 3),
            given: word(&mut r, 2, 2),
            organization_id: "default".into(),
            location_ids: vec![location.clone()],
            ..Default::default()
        };
        let id = v.add_practitioner(&admin, &req).await.with_context(|| format!("adding practitioner {i}"))?.id;
        v.set_availability(&desk, &id, &location, &hours).await.with_context(|| format!("availability of practitioner {i}"))?;
        practitioners.push(id);
    }
    // 1970-01-01 was a Thursday: day d is a Monday when (d + 3) % 7 == 0.
    let mut first_monday = b.tv.clock.now_micros().div_euclid(DAY_US) + 2;
    while (first_monday + 3).rem_euclid(7) != 0 {
        first_monday += 1;
    }
    Ok((Clinic { location, practitioners, first_monday }, desk))
}

/// Books the first `n` slots of the calendar through `Vault::book` with [`SEED_TASKS`]
/// concurrent tasks. Returns the time taken.
async fn book_calendar(b: &Bench, clinic: &Arc<Clinic>, desk: &Arc<Actor>, patients: &Arc<Vec<String>>, n: usize) -> Result<Duration> {
    let weeks = n.div_ceil(SLOTS_PER_WEEK);
    progress(format!(
        "booking {n} appointments through Vault::book ({SEED_TASKS} concurrent tasks): {PRACTITIONERS} practitioners, \
         {SLOTS_PER_DAY} slots of {SLOT_MINUTES} min a day, Monday to Friday, {weeks} weeks from {} (UTC), {} patients",
        utc_date(clinic.first_monday)?,
        patients.len()
    ));
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let last_mark = Arc::new(AtomicU64::new(0));
    let step = if n >= 100_000 { 10_000 } else { (n / 5).max(1) };
    let start = Instant::now();
    let mut handles = Vec::with_capacity(SEED_TASKS);
    for _ in 0..SEED_TASKS {
        let vault = b.tv.vault.clone();
        let (clinic, desk, patients) = (clinic.clone(), desk.clone(), patients.clone());
        let (next, done, last_mark) = (next.clone(), done.clone(), last_mark.clone());
        handles.push(tokio::spawn(async move {
            let purpose = desk.default_purpose();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let req = clinic.request(k, &patients)?;
                vault.book(&desk, purpose, &req, false).await.with_context(|| format!("booking slot {k}"))?;
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if d.checked_rem(step) == Some(0) {
                    let now_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                    let prev_us = last_mark.swap(now_us, Ordering::Relaxed);
                    let s = now_us as f64 / 1e6;
                    let recent = step as f64 / (now_us.saturating_sub(prev_us) as f64 / 1e6).max(1e-9);
                    progress(format!(
                        "  booked {d}/{n} ({s:.1} s, {:.0}/s overall, {recent:.0}/s for the last {step})",
                        d as f64 / s.max(1e-9)
                    ));
                }
            }
        }));
    }
    for h in handles {
        h.await.context("booking task failed")??;
    }
    Ok(start.elapsed())
}

/// The plaintext baseline of the bookings: the vault's appointment rows copied into a plain
/// table with the practitioner-time index, in its own SQLite file with the store's durability
/// settings, in transactions of [`PLAIN_BATCH`] rows. Returns the writing connection (kept for
/// the booking baseline), the number of rows and the time the inserts took.
async fn plain_appointments(b: &Bench, vault_db: &AnyPool) -> Result<(AnyPool, usize, Duration)> {
    let write = plain_writer(&b.tv.data_dir().join("plain-schedule.db")).await?;
    write
        .execute(
            "CREATE TABLE plain_appointments (id TEXT PRIMARY KEY, patient_id TEXT NOT NULL, practitioner_id TEXT NOT NULL, \
             location_id TEXT NOT NULL, start_at BIGINT NOT NULL, end_at BIGINT NOT NULL, status TEXT NOT NULL, created_at BIGINT NOT NULL)",
        )
        .await?;
    write.execute("CREATE INDEX plain_appointments_practitioner_time ON plain_appointments (practitioner_id, start_at)").await?;
    let rows = sqlx::query(
        "SELECT id, patient_id, practitioner_id, location_id, start_at, end_at, status, created_at FROM appointments ORDER BY created_at, id",
    )
    .fetch_all(vault_db)
    .await?;
    let start = Instant::now();
    for chunk in rows.chunks(PLAIN_BATCH) {
        let mut tx = write.begin().await?;
        for r in chunk {
            sqlx::query(
                "INSERT INTO plain_appointments (id, patient_id, practitioner_id, location_id, start_at, end_at, status, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(r.try_get::<String, _>("id")?)
            .bind(r.try_get::<String, _>("patient_id")?)
            .bind(r.try_get::<String, _>("practitioner_id")?)
            .bind(r.try_get::<String, _>("location_id")?)
            .bind(r.try_get::<i64, _>("start_at")?)
            .bind(r.try_get::<i64, _>("end_at")?)
            .bind(r.try_get::<String, _>("status")?)
            .bind(r.try_get::<i64, _>("created_at")?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    }
    Ok((write, rows.len(), start.elapsed()))
}

/// One schedule view: a practitioner's appointments in [from, to).
struct View {
    practitioner: String,
    from: i64,
    to: i64,
    params: Vec<(String, String)>,
}

impl View {
    /// `days` days from `first_day` (days since 1970-01-01), as FHIR search parameters.
    fn new(practitioner: &str, first_day: i64, days: i64) -> Result<View> {
        Ok(View {
            practitioner: practitioner.to_string(),
            from: first_day * DAY_US,
            to: (first_day + days) * DAY_US,
            params: vec![
                ("practitioner".to_string(), practitioner.to_string()),
                ("date".to_string(), format!("ge{}", utc_date(first_day)?)),
                ("date".to_string(), format!("lt{}", utc_date(first_day + days)?)),
            ],
        })
    }
}

/// The plain SELECT of a view on the vault's database, every column decoded; the ids in order.
async fn plain_view(pool: &AnyPool, v: &View) -> Result<Vec<String>> {
    let rows = sqlx::query(VIEW_SQL).bind(v.from).bind(v.to).bind(v.practitioner.as_str()).bind(VIEW_LIMIT).fetch_all(pool).await?;
    let mut ids = Vec::with_capacity(rows.len());
    for r in &rows {
        let mut n = 0usize;
        for col in ["patient_id", "practitioner_id", "location_id", "status"] {
            n += black_box(r.try_get::<String, _>(col)?).len();
        }
        for col in ["start_at", "end_at", "created_at"] {
            n += black_box(r.try_get::<i64, _>(col)?).to_ne_bytes().len();
        }
        for col in ["room_id", "type_id", "series_id"] {
            n += black_box(r.try_get::<Option<String>, _>(col)?).map_or(0, |s| s.len());
        }
        black_box(n);
        ids.push(r.try_get::<String, _>("id")?);
    }
    Ok(ids)
}

/// SQLite's plan for a query (its `EXPLAIN QUERY PLAN` details, joined).
async fn sqlite_plan<'q>(pool: &AnyPool, explain: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>) -> Result<String> {
    let rows = explain.fetch_all(pool).await?;
    let details: Vec<String> = rows.iter().map(|r| r.try_get::<String, _>("detail")).collect::<Result<_, _>>()?;
    Ok(details.join("; "))
}

/// Mean time of the booking's overlap check (the store's query, on the baseline pool) for the
/// slot `k` of the calendar, in milliseconds.
async fn overlap_check_ms(pool: &AnyPool, clinic: &Clinic, k: usize) -> Result<f64> {
    let (practitioner, start) = clinic.slot(k)?;
    let end = start + i64::from(SLOT_MINUTES) * MINUTE_US;
    let runs = 50u32;
    let t0 = Instant::now();
    for _ in 0..runs {
        let row = sqlx::query(OVERLAP_SQL).bind(practitioner).bind(start).bind(end).fetch_one(pool).await?;
        black_box(row.try_get::<i64, _>("n")?);
    }
    Ok(t0.elapsed().as_secs_f64() * 1000.0 / f64::from(runs))
}

/// Checks that carevault and the plain query return the same appointments for every view;
/// returns (mismatches, rows per view on average).
async fn compare_views(b: &Bench, pool: &AnyPool, desk: &Actor, views: &[View]) -> Result<(usize, f64)> {
    let mut mismatches = 0usize;
    let mut rows = 0usize;
    for v in views {
        let core: Vec<String> =
            b.tv.vault.search_appointments(desk, desk.default_purpose(), &v.params).await?.into_iter().map(|a| a.id).collect();
        let plain = plain_view(pool, v).await?;
        rows += plain.len();
        if core != plain {
            mismatches += 1;
            progress(format!("  WARNING {:?}: core {} rows, plain {} rows", v.params, core.len(), plain.len()));
        }
    }
    Ok((mismatches, rows as f64 / views.len().max(1) as f64))
}

/// Measures the views with [`CONCURRENT`] tasks: `Vault::search_appointments` against the plain
/// SELECT of the same rows.
async fn measure_views(b: &Bench, pool: &AnyPool, desk: &Arc<Actor>, label: &str, views: Arc<Vec<View>>) -> Result<()> {
    let core_op = {
        let vault = b.tv.vault.clone();
        let desk = desk.clone();
        let views = views.clone();
        Arc::new(move |_t: usize, i: u64| {
            let (vault, desk, views) = (vault.clone(), desk.clone(), views.clone());
            async move {
                let v = views.get(usize::try_from(i).unwrap_or(0) % views.len().max(1)).context("no views")?;
                black_box(vault.search_appointments(&desk, desk.default_purpose(), &v.params).await?);
                Ok(())
            }
        })
    };
    let plain_op = {
        let pool = pool.clone();
        let views = views.clone();
        Arc::new(move |_t: usize, i: u64| {
            let (pool, views) = (pool.clone(), views.clone());
            async move {
                let v = views.get(usize::try_from(i).unwrap_or(0) % views.len().max(1)).context("no views")?;
                black_box(plain_view(&pool, v).await?);
                Ok(())
            }
        })
    };
    let core = measure(&format!("{label} core"), CONCURRENT, b.secs, core_op).await?;
    let plain = measure(&format!("{label} plain"), CONCURRENT, b.secs, plain_op).await?;
    figure(label, core.rate(), "views/s", plain.rate());
    Ok(())
}

pub(crate) async fn bench_schedule(b: &Bench, patients: Arc<Vec<String>>, n: usize) -> Result<()> {
    progress(format!("schedule: a clinic of {PRACTITIONERS} practitioners, {n} appointments"));
    let (clinic, desk) = open_clinic(b).await?;
    let (clinic, desk) = (Arc::new(clinic), Arc::new(desk));
    let seed_time = book_calendar(b, &clinic, &desk, &patients, n).await?;
    let pool = baseline_pool(&b.tv).await?;
    let (plain_write, copied, plain_time) = plain_appointments(b, &pool).await?;
    ensure!(copied == n, "the vault holds {copied} appointments, {n} were booked");
    progress(format!("  booking: core {n} in {:.1} s, plain {n} in {:.2} s", seed_time.as_secs_f64(), plain_time.as_secs_f64()));
    let dir = b.tv.data_dir();
    progress(format!(
        "  on disk: carevault.db {:.0} MB (+ WAL {:.0} MB), plain-schedule.db {:.1} MB",
        file_mb(&dir.join("carevault.db")),
        file_mb(&dir.join("carevault.db-wal")),
        file_mb(&dir.join("plain-schedule.db"))
    ));
    figure("schedule.seed", n as f64 / seed_time.as_secs_f64().max(1e-9), "appointments/s", n as f64 / plain_time.as_secs_f64().max(1e-9));

    // The views: whole days and weeks of the calendar that the seed filled.
    let full_days = n / SLOTS_PER_CLINIC_DAY;
    let full_weeks = n / SLOTS_PER_WEEK;
    let mut days = Vec::with_capacity(VIEW_SET);
    for j in 0..VIEW_SET {
        days.push(View::new(clinic.practitioner(j)?, clinic.workday(j * full_days / VIEW_SET), 1)?);
    }
    let mut weeks = Vec::with_capacity(full_weeks * PRACTITIONERS);
    for w in 0..full_weeks {
        for p in 0..PRACTITIONERS {
            weeks.push(View::new(clinic.practitioner(p + w)?, clinic.first_monday + w as i64 * 7, 7)?);
        }
    }
    let (day_mismatches, day_rows) = compare_views(b, &pool, &desk, &days).await?;
    let (week_mismatches, week_rows) = compare_views(b, &pool, &desk, &weeks).await?;
    progress(format!(
        "  views: {} days ({day_rows:.1} appointments each, {day_mismatches} mismatches), {} weeks ({week_rows:.1} each, \
         {week_mismatches} mismatches)",
        days.len(),
        weeks.len()
    ));
    if !b.tv.backend.is_postgres() {
        let (first, after) = (clinic.slot(0)?, clinic.slot(n)?);
        let view_plan =
            sqlite_plan(&pool, sqlx::query(&format!("EXPLAIN QUERY PLAN {VIEW_SQL}")).bind(0i64).bind(1i64).bind(first.0).bind(1i64))
                .await?;
        let overlap_plan =
            sqlite_plan(&pool, sqlx::query(&format!("EXPLAIN QUERY PLAN {OVERLAP_SQL}")).bind(first.0).bind(0i64).bind(1i64)).await?;
        progress(format!("  plan of the view query: {view_plan}"));
        progress(format!("  plan of the booking's overlap check: {overlap_plan}"));
        let (early, late) = (overlap_check_ms(&pool, &clinic, 0).await?, overlap_check_ms(&pool, &clinic, n).await?);
        progress(format!(
            "  overlap check (plain, one practitioner's calendar of {} appointments): {early:.3} ms for the first slot ({}), {late:.3} ms \
             for the first slot after the booked ones ({})",
            n / PRACTITIONERS,
            utc_date(first.1.div_euclid(DAY_US))?,
            utc_date(after.1.div_euclid(DAY_US))?
        ));
    }
    measure_views(b, &pool, &desk, "schedule.day", Arc::new(days)).await?;
    measure_views(b, &pool, &desk, "schedule.week", Arc::new(weeks)).await?;

    // Booking: each operation takes the next free slot after the seeded calendar.
    let core_op = {
        let vault = b.tv.vault.clone();
        let (clinic, desk, patients) = (clinic.clone(), desk.clone(), patients.clone());
        let next = Arc::new(AtomicUsize::new(n));
        Arc::new(move |_t: usize, _i: u64| {
            let (vault, clinic, desk, patients) = (vault.clone(), clinic.clone(), desk.clone(), patients.clone());
            let k = next.fetch_add(1, Ordering::Relaxed);
            async move {
                let req = clinic.request(k, &patients)?;
                black_box(vault.book(&desk, desk.default_purpose(), &req, false).await.with_context(|| format!("booking slot {k}"))?);
                Ok(())
            }
        })
    };
    let plain_op = {
        let write = plain_write.clone();
        let (clinic, patients) = (clinic.clone(), patients.clone());
        let next = Arc::new(AtomicUsize::new(n));
        let now = b.tv.clock.now_micros();
        Arc::new(move |_t: usize, _i: u64| {
            let (write, clinic, patients) = (write.clone(), clinic.clone(), patients.clone());
            let k = next.fetch_add(1, Ordering::Relaxed);
            async move {
                let req = clinic.request(k, &patients)?;
                sqlx::query(
                    "INSERT INTO plain_appointments (id, patient_id, practitioner_id, location_id, start_at, end_at, status, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(format!("{k:032x}"))
                .bind(req.patient_id)
                .bind(req.practitioner_id)
                .bind(req.location_id)
                .bind(req.start)
                .bind(req.start + i64::from(SLOT_MINUTES) * MINUTE_US)
                .bind("booked")
                .bind(now)
                .execute(&write)
                .await?;
                Ok(())
            }
        })
    };
    let core = measure("schedule.book core", CONCURRENT, b.secs, core_op).await?;
    let plain = measure("schedule.book plain", CONCURRENT, b.secs, plain_op).await?;
    figure("schedule.book", core.rate(), "bookings/s", plain.rate());
    plain_write.close().await;
    pool.close().await;
    Ok(())
}
