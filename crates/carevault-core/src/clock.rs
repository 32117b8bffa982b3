use std::sync::atomic::{AtomicI64, Ordering};

/// Where time comes from. Injected so that timeouts can be tested without sleeping.
pub trait Clock: Send + Sync + 'static {
    /// Unix time in microseconds.
    fn now_micros(&self) -> i64;

    fn now_secs(&self) -> u64 {
        u64::try_from(self.now_micros() / 1_000_000).unwrap_or(0)
    }

    fn today(&self) -> time::Date {
        time::OffsetDateTime::from_unix_timestamp(self.now_micros() / 1_000_000).map(|t| t.date()).unwrap_or(time::Date::MIN)
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place that reads the system clock
    fn now_micros(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// Starts at the current system time.
    pub fn starting_now() -> ManualClock {
        ManualClock(AtomicI64::new(SystemClock.now_micros()))
    }

    pub fn advance_secs(&self, secs: i64) {
        self.0.fetch_add(secs * 1_000_000, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
