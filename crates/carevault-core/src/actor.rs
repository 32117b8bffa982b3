use std::net::IpAddr;
use std::sync::Arc;

use carevault_domain::{PurposeOfUse, UserId};

use crate::authz::Privileges;

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
/// MFA-completed, unexpired session of an active account), so holding an `Actor` proves
/// authentication. Its privileges are loaded with the request, never cached across requests.
#[derive(Clone)]
pub struct Actor {
    pub(crate) user_id: UserId,
    pub(crate) username: String,
    pub(crate) organization_id: String,
    pub(crate) roles: Vec<String>,
    pub(crate) privileges: Arc<Privileges>,
    pub(crate) session_public_id: Option<String>,
    /// Hash of the session token (own-session operations, step-up).
    pub(crate) session_token_hash: Option<Vec<u8>>,
    pub(crate) source_ip: Option<String>,
    pub(crate) session_expires_at: i64,
    /// When this session last proved a password and a second factor.
    pub(crate) authenticated_at: i64,
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
        write!(f, "Actor({}, {:?})", self.user_id, self.roles)
    }
}

impl Actor {
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }
    pub fn username(&self) -> &str {
        &self.username
    }
    pub fn organization_id(&self) -> &str {
        &self.organization_id
    }
    /// Names of the roles currently assigned (built-in or custom).
    pub fn roles(&self) -> &[String] {
        &self.roles
    }
    pub fn privileges(&self) -> &Privileges {
        &self.privileges
    }
    /// The purpose assumed when a request names none.
    pub fn default_purpose(&self) -> PurposeOfUse {
        crate::authz::default_purpose(&self.privileges)
    }
    /// When the session ends at the latest (Unix microseconds).
    pub fn session_expires_at(&self) -> i64 {
        self.session_expires_at
    }
    pub fn session_public_id(&self) -> Option<&str> {
        self.session_public_id.as_deref()
    }

    /// The system actor for operator commands and jobs.
    pub(crate) fn system(name: &str) -> Actor {
        Actor {
            user_id: UserId::from_random([0u8; 16]),
            username: name.to_string(),
            organization_id: String::new(),
            roles: Vec::new(),
            privileges: Arc::new(Privileges::default()),
            session_public_id: None,
            session_token_hash: None,
            source_ip: None,
            session_expires_at: i64::MAX,
            authenticated_at: i64::MAX,
            kind: ActorKind::System,
        }
    }

    pub(crate) fn is_system(&self) -> bool {
        self.kind == ActorKind::System
    }

    /// How the actor appears in the audit log.
    pub(crate) fn audit_name(&self) -> String {
        match self.kind {
            ActorKind::Staff => format!("user:{}", self.user_id),
            ActorKind::System => format!("system:{}", self.username),
        }
    }
}
