//! `/api/v1` administration, account and clinical endpoints, by concern: the signed-in user's
//! own account and passkeys (`account`), users and their sessions (`users`), roles, assignments,
//! grants and the approvals queue (`access`), a patient's care team, flags, placement and
//! break-glass (`patients`), alerts and the audit log (`audit`), the practice directory and the
//! schedule (`schedule`), and the chart: encounters, notes, diagnoses, documents and consents
//! (`chart`).
//!
//! Every handler takes a [`SignedIn`](crate::auth::SignedIn) or, when the operation acts on
//! patient data, a [`Purposed`](crate::auth::Purposed) (`crate::auth`), then calls the core,
//! which authorizes and audits. A JSON body or a query string is read before the session
//! (`BodyFirst`, `ApiQuery` in `crate::api`). Errors are problem+json.

mod access;
mod account;
mod audit;
mod chart;
mod patients;
mod schedule;
mod users;

pub(crate) use access::*;
pub(crate) use account::*;
pub(crate) use audit::*;
pub(crate) use chart::*;
pub(crate) use patients::*;
pub(crate) use schedule::*;
pub(crate) use users::*;
