use std::fmt;

/// The OperationOutcome issue type a bad input maps to (FHIR `IssueType` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueCode {
    /// Content invalid against the specification or a profile.
    Invalid,
    /// A structural issue (malformed JSON, wrong types).
    Structure,
    /// A required element is missing.
    Required,
    /// An element value is invalid.
    Value,
    /// The content or operation is not supported by this server.
    NotSupported,
}

impl IssueCode {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueCode::Invalid => "invalid",
            IssueCode::Structure => "structure",
            IssueCode::Required => "required",
            IssueCode::Value => "value",
            IssueCode::NotSupported => "not-supported",
        }
    }
}

/// Input that was refused, with the path of the offending element (FHIRPath-like) and a
/// message that names the rule. Messages never repeat the offending value (it may be PHI), and
/// paths and messages are built only from names the server knows: an element or parameter name
/// the client made up is never echoed (it could carry markup or a password typed in the wrong
/// place); the parent's path and the supported names are given instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub code: IssueCode,
    pub path: Option<String>,
    pub message: String,
}

impl InputError {
    pub fn new(code: IssueCode, path: impl Into<Option<String>>, message: impl Into<String>) -> Self {
        InputError { code, path: path.into(), message: message.into() }
    }
    pub fn value(path: &str, message: impl Into<String>) -> Self {
        Self::new(IssueCode::Value, Some(path.to_string()), message)
    }
    pub fn structure(path: Option<&str>, message: impl Into<String>) -> Self {
        Self::new(IssueCode::Structure, path.map(str::to_string), message)
    }
    pub fn not_supported(path: Option<&str>, message: impl Into<String>) -> Self {
        Self::new(IssueCode::NotSupported, path.map(str::to_string), message)
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for InputError {}

/// Rewrites a serde message as a predicate ("has the wrong JSON type (expected a string)") that
/// names the rule but never echoes what was submitted: neither a value nor an unknown element
/// or variant name. Names after "expected" are the server's own.
pub fn describe_serde_message(msg: &str) -> String {
    let msg = msg.split(" at line ").next().unwrap_or(msg);
    let expected = msg.split(", expected ").nth(1).map(|x| x.trim_end_matches('.')).filter(|x| !x.contains('"'));
    let with = |what: &str| match expected {
        Some(x) => format!("{what} (expected {x})"),
        None => what.to_string(),
    };
    if msg.starts_with("invalid type") {
        with("has the wrong JSON type")
    } else if msg.starts_with("unknown field") {
        with("holds an element that is not supported here")
    } else if msg.starts_with("unknown variant") {
        with("holds a code that is not allowed here")
    } else if let Some(rest) = msg.strip_prefix("missing field `") {
        // The name is one of the server's own fields.
        let name: String = rest.split('`').next().unwrap_or_default().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        format!("lacks the required element '{name}'")
    } else if msg.starts_with("invalid length") {
        with("has the wrong number of entries")
    } else if msg.starts_with("invalid value") {
        with("has an invalid value")
    } else if msg.starts_with("duplicate field") {
        "holds an element twice".to_string()
    } else {
        "has an invalid value".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_never_echo_input() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            name: String,
            n: u32,
            kind: Kind,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(rename_all = "lowercase")]
        enum Kind {
            A,
        }
        for (body, want) in [
            (
                r#"{"name":"x","n":1,"kind":"a","foo<script>":1}"#,
                "holds an element that is not supported here (expected one of `name`, `n`, `kind`)",
            ),
            (r#"{"name":"x","n":"<b>secret</b>","kind":"a"}"#, "has the wrong JSON type (expected u32)"),
            (r#"{"name":"x","n":1,"kind":"<img src=x>"}"#, "holds a code that is not allowed here (expected `a`)"),
            (r#"{"name":"x","kind":"a"}"#, "lacks the required element 'n'"),
            (r#"{"name":"x","n":-5,"kind":"a"}"#, "has an invalid value (expected u32)"),
        ] {
            let v: serde_json::Value = serde_json::from_str(body).expect("json");
            let e = serde_json::from_value::<T>(v).expect_err(body).to_string();
            let d = describe_serde_message(&e);
            assert_eq!(d, want, "{e}");
            for secret in ["foo", "script", "secret", "img", "-5"] {
                assert!(!d.contains(secret), "{d}");
            }
        }
    }
}
