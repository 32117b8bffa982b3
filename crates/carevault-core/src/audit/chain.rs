//! The hash chain: each record's hash covers its predecessor's hash and every field of the
//! record, in a length-prefixed encoding that cannot be ambiguous.

#[cfg(test)]
use carevault_store::AuditRow;
use carevault_store::AuditRowRef;

pub(crate) const GENESIS: [u8; 32] = [0u8; 32];

fn put(buf: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        None => buf.push(0),
        Some(b) => {
            buf.push(1);
            buf.extend_from_slice(&(b.len() as u64).to_be_bytes());
            buf.extend_from_slice(b);
        }
    }
}

/// The bytes a record's hash is computed over (without the predecessor hash).
pub(crate) fn canonical(r: AuditRowRef<'_>) -> Vec<u8> {
    let mut b = Vec::with_capacity(256 + r.details.map_or(0, <[u8]>::len));
    encode_into(&mut b, r);
    b
}

/// Appends the canonical encoding of `r` to `b` (a reused buffer on the verifier's hot path).
pub(crate) fn encode_into(b: &mut Vec<u8>, r: AuditRowRef<'_>) {
    b.extend_from_slice(b"carevault-audit-v1");
    b.extend_from_slice(&r.seq.to_be_bytes());
    put(b, Some(r.event_id));
    b.extend_from_slice(&r.at.to_be_bytes());
    put(b, Some(r.actor));
    put(b, r.session);
    put(b, r.source_ip);
    put(b, Some(r.action));
    put(b, Some(r.outcome));
    put(b, r.resource_type);
    put(b, r.resource_id);
    put(b, r.patient_id);
    put(b, r.purpose);
    put(b, r.details);
    // Added in schema 2; absent marks leave the encoding of older records unchanged.
    if let Some(marks) = r.review_flags {
        b.extend_from_slice(b"review");
        put(b, Some(marks));
    }
    // Added in schema 14, the same way: records without disclosed patients hash as before.
    if let Some(ids) = r.disclosed {
        b.extend_from_slice(b"disclosed");
        put(b, Some(ids));
    }
}

#[cfg(test)]
pub(crate) fn record_hash(prev: &[u8], r: &AuditRow) -> [u8; 32] {
    chain_hash(prev, &canonical(r.as_ref()))
}

/// The chain hash of a record from its canonical encoding.
pub(crate) fn chain_hash(prev: &[u8], canonical: &[u8]) -> [u8; 32] {
    carevault_crypto::sha256(&[prev, canonical])
}

/// The message an Ed25519 signature over the chain head covers.
pub(crate) fn head_message(seq: i64, hash: &[u8]) -> Vec<u8> {
    let mut m = b"carevault-audit-head-v1".to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m
}

/// The message an Ed25519 checkpoint signature covers.
pub(crate) fn checkpoint_message(seq: i64, hash: &[u8], at: i64) -> Vec<u8> {
    let mut m = b"carevault-audit-checkpoint-v1".to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&at.to_be_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(seq: i64, details: Option<Vec<u8>>) -> AuditRow {
        AuditRow {
            seq,
            event_id: format!("e{seq}"),
            at: 1_700_000_000_000_000 + seq,
            actor: "user:u1".into(),
            session: Some("s1".into()),
            source_ip: Some("127.0.0.1".into()),
            action: "read".into(),
            outcome: "success".into(),
            resource_type: Some("Patient".into()),
            resource_id: Some("p1".into()),
            patient_id: Some("p1".into()),
            purpose: Some("TREAT".into()),
            details,
            review_flags: None,
            disclosed: None,
            prev_hash: vec![],
            hash: vec![],
        }
    }

    proptest! {
        /// Changing any field of a record changes its hash.
        #[test]
        fn every_field_is_covered(field in 0usize..16, byte in any::<u8>()) {
            let r = row(7, Some(vec![1, 2, 3]));
            let h = record_hash(&GENESIS, &r);
            let mut m = r.clone();
            let s = |x: &mut String| { x.push(char::from(b'a' + byte % 26)); };
            match field {
                0 => m.seq += 1,
                1 => s(&mut m.event_id),
                2 => m.at += 1,
                3 => s(&mut m.actor),
                4 => m.session = None,
                5 => m.source_ip = Some("10.0.0.1".into()),
                6 => s(&mut m.action),
                7 => s(&mut m.outcome),
                8 => m.resource_type = None,
                9 => m.resource_id = Some("p2".into()),
                10 => m.patient_id = None,
                11 => m.purpose = Some("HOPERAT".into()),
                12 => m.details = Some(vec![1, 2, 3, byte]),
                13 => m.review_flags = Some(format!("sensitive:{}", char::from(b'a' + byte % 26))),
                14 => m.disclosed = Some(format!("p1 p{}", char::from(b'a' + byte % 26))),
                _ => {
                    m.disclosed = Some("p1".into());
                    m.review_flags = Some("p1".into());
                }
            }
            prop_assert_ne!(h, record_hash(&GENESIS, &m));
        }
    }

    /// A record without disclosed patients hashes exactly as before schema 14; the two optional
    /// trailing fields cannot stand in for each other.
    #[test]
    fn disclosed_is_an_optional_trailing_field() {
        let mut a = row(3, None);
        let legacy = canonical(a.as_ref());
        a.disclosed = Some("p1 p2".into());
        let with = canonical(a.as_ref());
        assert!(with.starts_with(&legacy));
        assert_eq!(&with[legacy.len()..legacy.len() + 9], b"disclosed");
        a.disclosed = None;
        a.review_flags = Some("p1 p2".into());
        assert_ne!(canonical(a.as_ref()), with);
    }

    #[test]
    fn none_and_empty_differ() {
        let mut a = row(1, None);
        let h1 = record_hash(&GENESIS, &a);
        a.details = Some(vec![]);
        assert_ne!(h1, record_hash(&GENESIS, &a));
    }
}
