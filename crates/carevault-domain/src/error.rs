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
/// message that names the rule. Messages never repeat the offending value: it may be PHI.
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
