use std::net::IpAddr;

use carevault_domain::{Role, UserId};

/// Facts about the request that are not authority: where it came from.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub source_ip: Option<IpAddr>,
}

impl RequestContext {
    pub fn ip_string(&self) -> Option<String> {
        self.source_ip.map(|i| i.to_string())
    }
}

/// An authenticated staff member. Only this crate constructs one (after checking a full,
/// MFA-completed, unexpired session), so holding an `Actor` proves authentication.
#[derive(Clone)]
pub struct Actor {
    pub(crate) user_id: UserId,
    pub(crate) username: String,
    pub(crate) role: Role,
    pub(crate) session_public_id: Option<String>,
    pub(crate) source_ip: Option<String>,
    pub(crate) session_expires_at: i64,
    pub(crate) kind: ActorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ActorKind {
    Staff,
    /// The operator's shell (CLI) and the server's own jobs. Never reachable over HTTP.
    System,
}

impl std::fmt::Debug for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Actor({}, {})", self.user_id, self.role)
    }
}

impl Actor {
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }
    pub fn username(&self) -> &str {
        &self.username
    }
    pub fn role(&self) -> Role {
        self.role
    }
    /// When the session ends at the latest (Unix microseconds).
    pub fn session_expires_at(&self) -> i64 {
        self.session_expires_at
    }

    /// The system actor for operator commands and jobs.
    pub(crate) fn system(name: &str) -> Actor {
        Actor {
            user_id: UserId::from_random([0u8; 16]),
            username: name.to_string(),
            role: Role::Admin,
            session_public_id: None,
            source_ip: None,
            session_expires_at: i64::MAX,
            kind: ActorKind::System,
        }
    }

    /// How the actor appears in the audit log.
    pub(crate) fn audit_name(&self) -> String {
        match self.kind {
            ActorKind::Staff => format!("user:{}", self.user_id),
            ActorKind::System => format!("system:{}", self.username),
        }
    }
}
