//! Domain types of carevault. No I/O, no async: everything here is a value that has been
//! parsed and checked at the boundary ("parse, don't validate").

/// `Debug` that never prints the value (PHI): `Type(<redacted>)`.
macro_rules! redacted_debug {
    ($($t:ty),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($t), "(<redacted>)"))
            }
        }
    )*};
}

pub mod allergy;
pub mod audit;
pub mod catalogue_doc;
pub mod consent;
pub mod error;
pub mod icd10;
pub mod ids;
pub mod normalize;
pub mod patient;
pub mod permission;
pub mod practice;
pub mod schedule;
pub mod search;
pub mod sniff;

pub use audit::{AuditAction, Outcome};
pub use error::{InputError, IssueCode};
pub use ids::{Mrn, PatientId, UserId};
pub use permission::{BreakGlassReason, DataClass, Operation, Permission, PurposeOfUse, ReviewOutcome, Role, SensitiveCategory};
