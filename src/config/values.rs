//! The building blocks of the config's values: checked numbers and names that refuse
//! what is not allowed when they are read, and the problems the checks across fields
//! report.

use std::{fmt, time::Duration};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::duration::ConfigDuration;

macro_rules! checked_number {
    ($(#[$doc:meta])* $name:ident, $allowed:expr, |$v:ident| $ok:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Deserialize)]
        #[serde(try_from = "f64")]
        pub struct $name(pub f64);

        impl $name {
            /// What the value may be, for error messages.
            pub const ALLOWED: &'static str = $allowed;

            /// The value, if it is allowed.
            pub fn new($v: f64) -> Option<Self> {
                ($v.is_finite() && $ok).then_some(Self($v))
            }
        }

        impl TryFrom<f64> for $name {
            type Error = String;
            fn try_from(value: f64) -> Result<Self, String> {
                Self::new(value).ok_or_else(|| format!("{value} is not allowed here: expected {}", $allowed))
            }
        }
    };
}
pub(crate) use checked_number;

checked_number!(
    /// A finite number above zero.
    Positive, "a number greater than 0", |v| v > 0.0
);
checked_number!(
    /// A finite number at or above zero.
    NonNegative, "a number at or above 0", |v| v >= 0.0
);
checked_number!(
    /// A share of requests, from 0 to 1.
    Share, "a share from 0 to 1, such as 0.3", |v| (0.0..=1.0).contains(&v)
);
checked_number!(
    /// A KV-cache target ratio.
    KvTarget, "a ratio greater than 0 and at most 1, such as 0.75", |v| v > 0.0 && v <= 1.0
);

/// A Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`): it enters PromQL unquoted, so it is checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct LabelName(String);

impl LabelName {
    /// `pod`: the label Kubernetes service discovery gives each replica.
    pub(super) fn pod() -> Self {
        Self("pod".to_owned())
    }

    /// The value as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LabelName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let mut chars = name.chars();
        let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid {
            Ok(Self(name))
        } else {
            Err(format!(
                "`{name}` is not a Prometheus label name: expected letters, digits and underscores, not starting with a digit"
            ))
        }
    }
}

impl fmt::Display for LabelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A profile's name: it ends up in metric names and URLs, so it is kept to a safe alphabet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct ProfileName(String);

impl ProfileName {
    /// The value as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProfileName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
            });
        if valid {
            Ok(Self(name))
        } else {
            Err(format!(
                "profile name `{name}` is not allowed: expected 1 to 63 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit"
            ))
        }
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HttpUrl(String);

impl HttpUrl {
    /// The value as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HttpUrl {
    type Error = String;
    fn try_from(url: String) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        match rest {
            Some(host)
                if !host.is_empty()
                    && !host.starts_with('/')
                    && !url.contains(char::is_whitespace) =>
            {
                Ok(Self(url))
            }
            _ => Err(format!(
                "`{url}` is not allowed: expected an http:// or https:// URL such as http://prometheus.monitoring:9090"
            )),
        }
    }
}

/// A value with no place in the text: a default.
pub(super) fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(
        value,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

/// One problem with a value that parsed, pointing at its line.
pub(super) struct Problem {
    /// The line of the value, 0 when not known.
    pub line: u64,
    /// The dotted key.
    pub key: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

pub(super) fn check_duration(
    problems: &mut Vec<Problem>,
    key: String,
    value: &Spanned<ConfigDuration>,
    min: Duration,
    max: Duration,
) {
    if value.value.0 < min || value.value.0 > max {
        problems.push(Problem {
            line: value.referenced.line(),
            key,
            message: format!(
                "{} is out of range: expected from {} to {}",
                value.value,
                ConfigDuration(min),
                ConfigDuration(max)
            ),
        });
    }
}
