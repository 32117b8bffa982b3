//! Domain types of carevault. No I/O, no async: everything here is a value that has been
//! parsed and checked at the boundary ("parse, don't validate").

pub mod audit;
pub mod error;
pub mod ids;
pub mod normalize;
pub mod patient;
pub mod permission;
pub mod search;

pub use audit::{AuditAction, Outcome};
pub use error::{InputError, IssueCode};
pub use ids::{Mrn, PatientId, UserId};
pub use permission::{Permission, PurposeOfUse, Role};
