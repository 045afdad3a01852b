//! Every error names where it came from: a file and line, or the command
//! line, and the option it concerns.

use std::fmt;
use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Where an option was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    CommandLine,
    File { path: String, line: usize },
}

impl Location {
    pub fn file(path: &str, line: usize) -> Self {
        Location::File {
            path: path.to_string(),
            line,
        }
    }

    /// The form used inside parentheses: "line 7 of /etc/dnsmasq.conf".
    pub fn bare(&self) -> String {
        match self {
            Location::CommandLine => "on the command line".to_string(),
            Location::File { path, line } => format!("line {line} of {path}"),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::CommandLine => f.write_str("on the command line"),
            Location::File { path, line } => write!(f, "at line {line} of {path}"),
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    /// Options that are each fine but do not fit together.
    #[error("{reason}")]
    Inconsistent { reason: String },

    #[error("unknown option '{name}' {at}")]
    UnknownOption { name: String, at: Location },

    /// A dnsmasq option twinmasq does not implement (yet).
    #[error("option '{name}' ({}) is not supported by twinmasq yet", .at.bare())]
    Unsupported { name: String, at: Location },

    /// A supported option used in a form twinmasq does not implement.
    #[error("{option} {at}: {what} is not supported by twinmasq yet")]
    FormNotSupported {
        option: String,
        at: Location,
        what: String,
    },

    #[error("bad {option} {at}: {reason}")]
    BadValue {
        option: String,
        at: Location,
        reason: String,
    },

    #[error("option '{option}' {at} needs a value")]
    MissingValue { option: String, at: Location },

    #[error("option '{option}' {at} takes no value (got '{value}')")]
    UnexpectedValue {
        option: String,
        at: Location,
        value: String,
    },

    #[error("option '{option}' {at} is given more than once")]
    Repeated { option: String, at: Location },

    #[error("option '{option}' {at} is only valid on the command line")]
    CommandLineOnly { option: String, at: Location },

    #[error("option '{option}' {at} is ambiguous: it could be {candidates}")]
    Ambiguous {
        option: String,
        at: Location,
        candidates: String,
    },

    #[error("syntax error {at}: {reason}")]
    Syntax { at: Location, reason: String },

    #[error("cannot read {} ({context}): {source}", .path.display())]
    Io {
        path: PathBuf,
        context: String,
        #[source]
        source: io::Error,
    },
}

impl ConfigError {
    pub(crate) fn bad(option: &str, at: &Location, reason: impl Into<String>) -> Self {
        ConfigError::BadValue {
            option: option.to_string(),
            at: at.clone(),
            reason: reason.into(),
        }
    }

    pub(crate) fn not_yet(option: &str, at: &Location, what: impl Into<String>) -> Self {
        ConfigError::FormNotSupported {
            option: option.to_string(),
            at: at.clone(),
            what: what.into(),
        }
    }
}

/// Field-level parsers return a bare reason (or a not-supported-yet form);
/// the caller attaches option and location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FieldError {
    Bad(String),
    NotYet(String),
}

impl FieldError {
    pub(crate) fn bad(reason: impl Into<String>) -> Self {
        FieldError::Bad(reason.into())
    }

    pub(crate) fn not_yet(what: impl Into<String>) -> Self {
        FieldError::NotYet(what.into())
    }

    pub(crate) fn at(self, option: &str, at: &Location) -> ConfigError {
        match self {
            FieldError::Bad(reason) => ConfigError::bad(option, at, reason),
            FieldError::NotYet(what) => ConfigError::not_yet(option, at, what),
        }
    }
}
