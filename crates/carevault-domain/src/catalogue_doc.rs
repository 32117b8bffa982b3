//! `docs/permissions.md`, generated from the catalogue. A test keeps the file in sync; run
//! `CAREVAULT_WRITE_DOCS=1 cargo test -p carevault-domain catalogue_doc` to regenerate it.

use crate::permission::{DataClass, Operation, Permission, SensitiveCategory};

/// The Markdown text of `docs/permissions.md`.
pub fn permissions_markdown() -> String {
    let mut s = String::from(
        "# Permissions\n\n\
         Generated from `crates/carevault-domain/src/permission.rs`; do not edit by hand \
         (`CAREVAULT_WRITE_DOCS=1 cargo test -p carevault-domain catalogue_doc` rewrites it).\n\n\
         Every access to patient data names one of these permissions, checked by the core for the \
         actor's role assignments and grants in the patient's organization, location and \
         department. How roles, scopes, care relationships, sensitive flags and break-glass combine \
         is explained in [security/access-control.md](security/access-control.md); which built-in \
         role holds which permission is listed at `GET /api/v1/roles` and in that document.\n\n\
         | Permission | What it allows | Operations it opens |\n|---|---|---|\n",
    );
    for p in Permission::ALL {
        let ops: Vec<String> = if p.sensitive_category().is_some() {
            vec!["every patient operation on a record flagged with this category".to_string()]
        } else {
            p.operations().iter().map(|o| format!("`{}`", o.id())).collect()
        };
        s.push_str(&format!("| `{}` | {} | {} |\n", p.id(), p.description(), ops.join(", ")));
    }
    s.push_str("\n## Operations\n\nEach core operation, the permission it needs and the kind of data it touches. ");
    s.push_str("Own-account operations need only a signed-in session.\n\n| Operation | Permission | Data |\n|---|---|---|\n");
    for o in Operation::ALL {
        let class = match o.class() {
            DataClass::Demographic => "demographic (scope + sensitive flags)",
            DataClass::Clinical => "clinical (scope + sensitive flags + care relationship or break-glass)",
            DataClass::Administrative => "administrative (organization scope)",
            DataClass::OwnAccount => "own account",
        };
        let perm = o.permission().map_or("—".to_string(), |p| format!("`{}`", p.id()));
        s.push_str(&format!("| `{}` | {} | {} |\n", o.id(), perm, class));
    }
    s.push_str("\n## Sensitive-record categories\n\n| Flag | Meaning | Permission | FHIR `meta.security` |\n|---|---|---|---|\n");
    for c in SensitiveCategory::ALL {
        let (code, _) = c.security_label();
        s.push_str(&format!("| `{}` | {} | `{}` | `{}` |\n", c.id(), c.description(), c.permission().id(), code));
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn catalogue_doc_is_in_sync() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/permissions.md");
        let want = super::permissions_markdown();
        if std::env::var_os("CAREVAULT_WRITE_DOCS").is_some() {
            std::fs::write(path, &want).expect("write docs/permissions.md");
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/permissions.md is out of date: run CAREVAULT_WRITE_DOCS=1 cargo test -p carevault-domain catalogue_doc"
        );
    }
}
