//! The one error type of drydock-state, classified as retryable or permanent.

use std::fmt;

/// A specialised `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure a drydock-state operation can report.
///
/// Messages are lowercase and never contain a password: URIs are shown through
/// [`redact_uri`], configuration errors name the key but never echo its value.
/// Use [`Error::is_retryable`] to decide whether trying again can succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The named entity does not exist.
    #[error("{entity} not found: {id}")]
    NotFound {
        /// What was looked up.
        entity: Entity,
        /// Its identifier.
        id: String,
    },

    /// An entity is created with an id already taken; nothing was stored.
    #[error("{entity} {id} already exists")]
    AlreadyExists {
        /// What was created.
        entity: Entity,
        /// The id already taken.
        id: String,
    },

    /// The operation conflicts with the entity's stored state: an illegal status change, a
    /// write to a finished task, new work under a task being stopped, a claim id already used.
    #[error("conflict: {entity} {id} {reason}")]
    Conflict {
        /// What the operation was applied to.
        entity: Entity,
        /// Its identifier.
        id: String,
        /// Why its state refuses the operation, e.g. `is complete; it takes no new subtasks`.
        reason: String,
    },

    /// An input value is not acceptable; nothing was stored.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The field (or argument) at fault, e.g. `task.action` or `message.text`.
        field: String,
        /// Why it was refused.
        reason: String,
    },

    /// A configuration value is wrong. The value itself is never echoed.
    #[error("configuration key `{key}` from {origin}: {reason}")]
    Config {
        /// The dotted key, e.g. `database.pool_size`.
        key: String,
        /// Where the value came from: `defaults`, a file path or an environment variable.
        origin: String,
        /// Why it was refused.
        reason: String,
    },

    /// No driver or backend is registered for the URI's scheme.
    #[error("unknown scheme `{scheme}`; registered schemes: {}", .known.join(", "))]
    UnknownScheme {
        /// The scheme that was asked for.
        scheme: String,
        /// The schemes that are registered, sorted.
        known: Vec<String>,
    },

    /// A scheme known to drydock-state whose backend was compiled out.
    #[error(
        "scheme `{scheme}` needs the `{feature}` feature of drydock-state, which is not enabled"
    )]
    FeatureDisabled {
        /// The scheme that was asked for.
        scheme: String,
        /// The Cargo feature that provides it.
        feature: &'static str,
    },

    /// Two registrations claim one scheme.
    #[error("scheme `{scheme}` is registered twice: by `{first}` and by `{second}`")]
    DuplicateScheme {
        /// The contested scheme.
        scheme: String,
        /// The registration seen first.
        first: String,
        /// The registration seen second.
        second: String,
    },

    /// Fetching a design document failed.
    #[error("design fetch from {uri} failed: {reason}")]
    DesignFetch {
        /// The URI, with any password removed.
        uri: String,
        /// What went wrong.
        reason: String,
        /// Whether trying again may succeed (connect errors, timeouts, 408, 429, 5xx).
        retryable: bool,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },

    /// The backend cannot be reached or did not answer in time; trying again may succeed.
    #[error("backend unavailable: {message}")]
    Unavailable {
        /// What happened, with no credentials.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },

    /// The caller's lease is gone: it was taken over, released or expired, or a fenced
    /// operation was given a stale term.
    #[error("lease lost: {0}")]
    LeaseLost(String),

    /// The backend failed in a way retrying will not fix (a migration error, corrupt data).
    #[error("backend error: {message}")]
    Backend {
        /// What happened, with no credentials.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
}

/// What an [`Error::NotFound`], [`Error::AlreadyExists`] or [`Error::Conflict`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Entity {
    /// A task.
    Task,
    /// The parent named by a new task or a subtask link.
    ParentTask,
    /// A claim, named by its claim id.
    Claim,
    /// A boot action.
    BootAction,
    /// A node's boot-action context.
    BootActionContext,
    /// A result message, named by its sequence number.
    Message,
    /// A row the database refers to but the backend cannot name (a foreign key, a unique
    /// index): what a backend reports when it cannot tell which entity it is.
    Row,
}

impl Entity {
    /// The entity as error messages name it (`task`, `parent task`, `boot action`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Task => "task",
            Entity::ParentTask => "parent task",
            Entity::Claim => "claim",
            Entity::BootAction => "boot action",
            Entity::BootActionContext => "boot-action context",
            Entity::Message => "message",
            Entity::Row => "row",
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A boxed error kept as a [`std::error::Error::source`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl Error {
    /// `true` when the same call may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unavailable { .. } => true,
            Error::DesignFetch { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(entity: Entity, id: impl fmt::Display) -> Self {
        Error::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    /// Shorthand for [`Error::AlreadyExists`].
    pub fn already_exists(entity: Entity, id: impl fmt::Display) -> Self {
        Error::AlreadyExists {
            entity,
            id: id.to_string(),
        }
    }

    /// Shorthand for [`Error::Conflict`].
    pub fn conflict(entity: Entity, id: impl fmt::Display, reason: impl Into<String>) -> Self {
        Error::Conflict {
            entity,
            id: id.to_string(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`Error::Unavailable`] with a source.
    pub fn unavailable(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Unavailable {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// Shorthand for [`Error::Backend`] with a source.
    pub fn backend(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Backend {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// A database failure reduced to what is safe to keep: the database's code (a PostgreSQL
/// SQLSTATE, a SQLite extended result code) and its primary message, nothing else.
///
/// Backends keep this, never the driver's own error, as the [`std::error::Error::source`] of
/// the errors they return: a driver error's `Debug` shows everything the server sent, and
/// PostgreSQL's DETAIL ("Failing row contains (...)") and HINT can hold whole rows, design
/// references and their passwords included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatabaseFailure {
    code_kind: &'static str,
    code: Option<String>,
    message: String,
}

impl DatabaseFailure {
    /// A failure with the code's kind (`SQLSTATE`, `SQLite result code`), the code if the
    /// database gave one, and the primary message.
    pub fn new(code_kind: &'static str, code: Option<String>, message: impl Into<String>) -> Self {
        DatabaseFailure {
            code_kind,
            code,
            message: message.into(),
        }
    }

    /// The database's code for the failure, if it gave one.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The primary message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for DatabaseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} ({} {code})", self.message, self.code_kind),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DatabaseFailure {}

/// Renders a URI with its password replaced by `***`; what is not a URI is returned as is
/// unless it looks like it carries user info, in which case everything before `@` is hidden.
pub fn redact_uri(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        Err(_) => match (uri.find("://"), uri.rfind('@')) {
            (Some(start), Some(at)) if at > start => {
                format!("{}://***@{}", &uri[..start], &uri[at + 1..])
            }
            _ => uri.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_password_and_keeps_user() {
        let s = redact_uri("postgres://drydock:s3cret@db:5432/drydock");
        assert_eq!(s, "postgres://drydock:***@db:5432/drydock");
        assert!(!s.contains("s3cret"));
    }

    #[test]
    fn redact_hides_userinfo_of_unparsable_uri() {
        let s = redact_uri("postgres://drydock:s3cret@db:notaport/x");
        assert!(!s.contains("s3cret"), "{s}");
    }

    #[test]
    fn retryable_classification() {
        assert!(Error::Unavailable {
            message: "x".into(),
            source: None
        }
        .is_retryable());
        assert!(!Error::conflict(Entity::Task, "x", "is final").is_retryable());
        assert!(!Error::already_exists(Entity::Task, "x").is_retryable());
        assert!(!Error::invalid("task.action", "empty").is_retryable());
    }

    #[test]
    fn unknown_scheme_lists_known() {
        let e = Error::UnknownScheme {
            scheme: "ftp".into(),
            known: vec!["file".into(), "http".into()],
        };
        assert_eq!(
            e.to_string(),
            "unknown scheme `ftp`; registered schemes: file, http"
        );
    }
}
