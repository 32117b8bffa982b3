//! Privileges per request: a user's unexpired role assignments and live grants, with scopes.

use super::*;

/// Builds the privileges of a user from its unexpired role assignments and live grants.
pub(crate) async fn load_privileges(
    store: &carevault_store::Store,
    user_id: &str,
    now: i64,
) -> Result<(Vec<String>, Privileges, Option<i64>), CoreError> {
    let mut roles = Vec::new();
    let mut entitlements = Vec::new();
    // The first moment after `now` at which an assignment or grant starts or ends: what was
    // loaded is the user's privileges until then.
    let mut changes_at: Option<i64> = None;
    let mut until = |t: i64| {
        if t > now {
            changes_at = Some(changes_at.map_or(t, |c| c.min(t)));
        }
    };
    let assignments = store.assignments_for_user(user_id).await?;
    let grants = store.grants_for_user(user_id).await?;
    for a in &assignments {
        if let Some(e) = a.expires_at {
            until(e);
        }
    }
    for g in grants.iter().filter(|g| g.revoked_at.is_none()) {
        until(g.starts_at);
        until(g.ends_at);
    }
    for a in assignments {
        if a.expires_at.is_some_and(|e| e <= now) {
            continue;
        }
        let (permissions, purposes) = match Role::parse(&a.role) {
            Some(r) => (authz::role_permissions(r).to_vec(), authz::role_purposes(r).to_vec()),
            None => match store.custom_role(&a.role).await? {
                Some(c) => (
                    c.permissions.split_whitespace().filter_map(Permission::parse).collect(),
                    c.purposes
                        .split_whitespace()
                        .filter_map(PurposeOfUse::parse)
                        .filter(|p| *p != PurposeOfUse::EmergencyTreatment)
                        .collect(),
                ),
                // A role deleted or unknown grants nothing (fail closed).
                None => continue,
            },
        };
        if !roles.contains(&a.role) {
            roles.push(a.role.clone());
        }
        entitlements.push(Entitlement {
            permissions,
            purposes,
            scope: a.scope,
            patient: None,
            source: format!("role:{}@{}", a.role, a.id),
        });
    }
    for g in grants {
        if g.revoked_at.is_some() || g.starts_at > now || g.ends_at <= now {
            continue;
        }
        let Some(p) = Permission::parse(&g.permission) else { continue };
        // A grant adds a permission, not a purpose: it works for the purposes the user's roles
        // allow in that scope (or, with none, for operations).
        let purposes = entitlements
            .iter()
            .filter(|e| e.scope.organization_id == g.scope.organization_id)
            .flat_map(|e| e.purposes.iter().copied())
            .chain(std::iter::once(PurposeOfUse::Operations))
            .collect();
        entitlements.push(Entitlement {
            permissions: vec![p],
            purposes,
            scope: g.scope,
            patient: g.patient_id,
            source: format!("grant:{}", g.id),
        });
    }
    Ok((roles, Privileges { entitlements }, changes_at))
}
