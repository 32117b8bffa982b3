//! In-memory sign-in throttles, all bounded:
//!
//! - per **name and address** (the name typed, known or not, from one client address): a
//!   person who keeps failing slows down only themselves, not everyone behind the same NAT or
//!   proxy;
//! - per **address** across all names, with a much higher limit: password spraying across
//!   accounts from one address;
//! - per **unknown name**: the failure count and lock an account would have in the database, so
//!   that an unknown username answers exactly as an existing one does (same statuses, bodies
//!   and `Retry-After`), and sign-in answers tell nothing about which accounts exist.
//!
//! Names are kept only as a keyed SHA-256 (a random key per process): people type passwords
//! into username fields.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Most entries each table holds; beyond this, stale entries go first.
const MAX_ENTRIES: usize = 50_000;

/// A name as the throttles know it: keyed hash of the normalized name.
pub(crate) type NameKey = [u8; 16];

#[derive(Clone, Copy)]
struct Window {
    start: i64,
    count: u32,
    last: i64,
}

/// Failures of a name that has no account, mirroring `users.failed_logins`/`locked_until`.
#[derive(Clone, Copy)]
pub(crate) struct Strikes {
    pub failed: i64,
    pub locked_until: Option<i64>,
    last: i64,
}

pub(crate) struct Throttle {
    key: [u8; 32],
    pairs: Mutex<HashMap<(NameKey, Option<IpAddr>), Window>>,
    addresses: Mutex<HashMap<IpAddr, Window>>,
    unknown: Mutex<HashMap<NameKey, Strikes>>,
}

/// Backoff inside a window: from half the limit on, each further failure doubles the wait
/// before the next attempt (1 s, 2 s, 4 s, …); at the limit, the rest of the window.
fn backoff(w: &Window, limit: u32, window: i64, now: i64) -> Option<i64> {
    if now - w.start >= window {
        return None;
    }
    if w.count >= limit {
        return Some((w.start + window - now) / 1_000_000 + 1);
    }
    let soft = (limit / 2).max(1);
    if w.count < soft {
        return None;
    }
    let wait = (1_000_000i64 << (w.count - soft).min(20)).min(window);
    (now < w.last + wait).then(|| (w.last + wait - now) / 1_000_000 + 1)
}

/// Counts a failure; returns the new count in the window.
fn count<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Window>, key: K, window: i64, now: i64) -> u32 {
    if map.len() >= MAX_ENTRIES {
        map.retain(|_, w| now - w.start < window);
    }
    let w = map.entry(key).or_insert(Window { start: now, count: 0, last: now });
    if now - w.start >= window {
        *w = Window { start: now, count: 0, last: now };
    }
    w.count = w.count.saturating_add(1);
    w.last = now;
    w.count
}

impl Throttle {
    pub(crate) fn new() -> Throttle {
        Throttle {
            key: carevault_crypto::random_bytes::<32>(),
            pairs: Mutex::new(HashMap::new()),
            addresses: Mutex::new(HashMap::new()),
            unknown: Mutex::new(HashMap::new()),
        }
    }

    /// The key of a name as typed (trimmed, lower-cased).
    pub(crate) fn name_key(&self, normalized_name: &str) -> NameKey {
        let h = carevault_crypto::sha256(&[b"carevault-throttle-v1", &self.key, normalized_name.as_bytes()]);
        let mut k = [0u8; 16];
        k.copy_from_slice(&h[..16]);
        k
    }

    /// Seconds to wait before this name may be tried again from this address, if any.
    pub(crate) fn pair_wait(&self, name: &NameKey, ip: Option<IpAddr>, limit: u32, window: i64, now: i64) -> Option<i64> {
        let map = self.pairs.lock().ok()?;
        backoff(map.get(&(*name, ip))?, limit, window, now)
    }

    /// Seconds to wait before any sign-in from this address, if any.
    pub(crate) fn address_wait(&self, ip: Option<IpAddr>, limit: u32, window: i64, now: i64) -> Option<i64> {
        let ip = ip?;
        let map = self.addresses.lock().ok()?;
        backoff(map.get(&ip)?, limit, window, now)
    }

    /// Counts a failure of `name` from `ip`. Returns true when this failure makes the address
    /// enter its backoff (a sign-in storm: the caller raises the alert, once per window).
    pub(crate) fn failed(&self, name: &NameKey, ip: Option<IpAddr>, address_limit: u32, window: i64, now: i64) -> bool {
        if let Ok(mut pairs) = self.pairs.lock() {
            count(&mut pairs, (*name, ip), window, now);
        }
        let Some(ip) = ip else { return false };
        match self.addresses.lock() {
            Ok(mut map) => count(&mut map, ip, window, now) == (address_limit / 2).max(1),
            Err(_) => false,
        }
    }

    /// The failures and lock of a name that has no account.
    pub(crate) fn unknown_strikes(&self, name: &NameKey) -> Option<Strikes> {
        self.unknown.lock().ok()?.get(name).copied()
    }

    /// Records a failure of a name that has no account, with the lock `lock_for` gives the new
    /// count (as the database would for an account).
    pub(crate) fn unknown_failed(&self, name: &NameKey, now: i64, lock_for: impl Fn(i64) -> Option<i64>) {
        let Ok(mut map) = self.unknown.lock() else { return };
        if map.len() >= MAX_ENTRIES {
            // A day without failures makes a name's record stale; locked names are kept.
            map.retain(|_, s| s.locked_until.is_some_and(|u| u > now) || now - s.last < 86_400 * 1_000_000);
            if map.len() >= MAX_ENTRIES {
                map.retain(|_, s| s.locked_until.is_some_and(|u| u > now));
            }
        }
        let s = map.entry(*name).or_insert(Strikes { failed: 0, locked_until: None, last: now });
        s.failed = s.failed.saturating_add(1);
        s.last = now;
        s.locked_until = lock_for(s.failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_waits_out_the_window() {
        let t = Throttle::new();
        let n = t.name_key("someone");
        let ip = Some(IpAddr::from([192, 0, 2, 1]));
        let window = 600 * 1_000_000;
        for _ in 0..4 {
            t.failed(&n, ip, 100, window, 0);
        }
        assert_eq!(t.pair_wait(&n, ip, 10, window, 0), None);
        t.failed(&n, ip, 100, window, 0);
        assert_eq!(t.pair_wait(&n, ip, 10, window, 0), Some(2));
        // Another name from the same address, and the same name elsewhere, are free.
        assert_eq!(t.pair_wait(&t.name_key("other"), ip, 10, window, 0), None);
        assert_eq!(t.pair_wait(&n, Some(IpAddr::from([192, 0, 2, 2])), 10, window, 0), None);
        for _ in 0..5 {
            t.failed(&n, ip, 100, window, 0);
        }
        assert_eq!(t.pair_wait(&n, ip, 10, window, 0), Some(601));
        assert_eq!(t.pair_wait(&n, ip, 10, window, window), None);
        // Names are not kept as typed.
        assert_ne!(t.name_key("someone"), Throttle::new().name_key("someone"));
    }
}
