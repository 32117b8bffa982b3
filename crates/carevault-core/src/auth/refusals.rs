//! Refusals before sign-in, counted per kind, source address (and account) and time window.
//!
//! The kinds: a request without a valid session; a second-factor step without a pending
//! session; a sign-in attempt while its address or name is throttled, or while the account (or
//! unknown name) is locked. None of them costs the caller anything, so auditing each with a
//! signed, synced record would let anyone make the server fsync as fast as they can send.
//!
//! The first refusal of a window is audited at once (and the answer waits until its record is
//! durable, like every refusal). Further refusals of the same key in the window are counted in
//! memory and written as **one** record carrying the count when the window has ended: by the
//! vault's two-second tick, by the next refusal from anywhere, or at shutdown. No refusal goes
//! uncounted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use carevault_domain::AuditAction;

/// What was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// A request to a FHIR, API or UI route without a valid session.
    NoSession,
    /// A second-factor step (code, passkey, recovery code) without a pending session.
    NoPendingSession,
    /// A sign-in while the address, or the name from this address, is throttled.
    Throttled,
    /// A sign-in while the account (or the unknown name) is locked.
    Locked,
}

impl Kind {
    pub(crate) fn action(self) -> AuditAction {
        match self {
            Kind::NoSession => AuditAction::AccessDenied,
            Kind::NoPendingSession => AuditAction::MfaFailed,
            Kind::Throttled | Kind::Locked => AuditAction::LoginFailed,
        }
    }

    pub(crate) fn reason(self) -> &'static str {
        match self {
            Kind::NoSession => "no-session",
            Kind::NoPendingSession => "no-pending-session",
            Kind::Throttled => "throttled",
            Kind::Locked => "locked",
        }
    }
}

/// What refusals are counted by: the kind, the client address and, for a locked account, the
/// audit name of the account.
pub(crate) type Key = (Kind, Option<IpAddr>, Option<String>);

/// Addresses counted at once, at most. When full, a refusal from a new address is audited on
/// its own (as if it opened a window) rather than dropped.
const MAX_ADDRESSES: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    /// When the window opened (the first refusal, audited on its own).
    pub opened: i64,
    /// Refusals after the first, not yet written.
    pub further: u64,
    pub first_further: i64,
    pub last: i64,
}

/// What to do with a refusal.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Audit this refusal now (a window opens, or the table is full).
    Record,
    /// Counted; the window's record will carry it.
    Counted,
}

pub(crate) struct Refusals {
    window: i64,
    open: Mutex<HashMap<Key, Tally>>,
}

impl Refusals {
    pub(crate) fn new(window_secs: i64) -> Refusals {
        Refusals { window: window_secs.max(1) * 1_000_000, open: Mutex::new(HashMap::new()) }
    }

    pub(crate) fn window_secs(&self) -> i64 {
        self.window / 1_000_000
    }

    /// Notes one refusal at `now`. Returns what to do with it, and the windows that have ended
    /// (to be written, with their counts).
    pub(crate) fn note(&self, key: &Key, now: i64) -> (Decision, Vec<(Key, Tally)>) {
        let Ok(mut open) = self.open.lock() else {
            return (Decision::Record, Vec::new());
        };
        let ended = Self::take_ended(&mut open, self.window, now, false);
        let full = open.len() >= MAX_ADDRESSES;
        let decision = match open.get_mut(key) {
            Some(t) => {
                if t.further == 0 {
                    t.first_further = now;
                }
                t.further = t.further.saturating_add(1);
                t.last = now;
                Decision::Counted
            }
            None if full => Decision::Record,
            None => {
                open.insert(key.clone(), Tally { opened: now, further: 0, first_further: now, last: now });
                Decision::Record
            }
        };
        (decision, ended)
    }

    /// Takes the windows that have ended (all of them with `all`, at shutdown) that counted
    /// refusals beyond their first.
    pub(crate) fn ended(&self, now: i64, all: bool) -> Vec<(Key, Tally)> {
        match self.open.lock() {
            Ok(mut open) => Self::take_ended(&mut open, self.window, now, all),
            Err(_) => Vec::new(),
        }
    }

    /// Closes a window whose first record could not be written; returns what it counted since,
    /// if anything.
    pub(crate) fn abandon(&self, key: &Key) -> Option<Tally> {
        self.open.lock().ok()?.remove(key).filter(|t| t.further > 0)
    }

    fn take_ended(open: &mut HashMap<Key, Tally>, window: i64, now: i64, all: bool) -> Vec<(Key, Tally)> {
        let done: Vec<Key> = open.iter().filter(|(_, t)| all || now - t.opened >= window).map(|(k, _)| k.clone()).collect();
        done.into_iter().filter_map(|k| open.remove(&k).map(|t| (k, t))).filter(|(_, t)| t.further > 0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_record_opens_a_window_and_one_carries_its_count() {
        let r = Refusals::new(60);
        let a: Key = (Kind::NoSession, Some(IpAddr::from([192, 0, 2, 1])), None);
        let b: Key = (Kind::NoSession, Some(IpAddr::from([192, 0, 2, 2])), None);
        let a_mfa: Key = (Kind::NoPendingSession, a.1, None);
        assert_eq!(r.note(&a, 0), (Decision::Record, vec![]));
        for i in 1..=199 {
            assert_eq!(r.note(&a, i).0, Decision::Counted);
        }
        assert_eq!(r.note(&b, 10).0, Decision::Record);
        assert_eq!(r.note(&a_mfa, 10).0, Decision::Record, "another kind has its own window");
        assert!(r.ended(59_999_999, false).is_empty(), "the window is still open");
        let ended = r.ended(60_000_010, false);
        assert_eq!(ended.len(), 1, "b had no further refusals: its first record says it all");
        assert_eq!(ended[0].0, a);
        assert_eq!((ended[0].1.further, ended[0].1.first_further, ended[0].1.last), (199, 1, 199));
        // A new window opens with a record of its own.
        assert_eq!(r.note(&a, 60_000_011).0, Decision::Record);
        assert_eq!(r.note(&a, 60_000_012).0, Decision::Counted);
        assert_eq!(r.ended(60_000_013, true).len(), 1, "shutdown writes open windows");
    }
}
