//! [`CodecError`]: why bytes are not a valid remoting frame, header or body.

/// A malformed frame, header, field or body. Decoding reports it instead of panicking;
/// the server answers the request with an error code or closes a connection whose
/// framing is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// A frame announces more bytes than the limit allows (checked before allocating).
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The frame layout is inconsistent (lengths that do not add up).
    #[error("malformed frame: {0}")]
    Frame(String),
    /// The header does not decode.
    #[error("malformed {kind} header: {reason}")]
    Header {
        /// `JSON` or `ROCKETMQ`.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A required ext field is absent.
    #[error("the custom field {0} is null")]
    MissingField(&'static str),
    /// An ext field has a value of the wrong type.
    #[error("the custom field {field} has an invalid value {value:?}: {expected}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A body (JSON, batch or record) does not decode.
    #[error("malformed {what}: {reason}")]
    Body {
        /// Which body.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl CodecError {
    pub(crate) fn header(kind: &'static str, reason: impl Into<String>) -> Self {
        Self::Header {
            kind,
            reason: reason.into(),
        }
    }

    pub(crate) fn body(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Body {
            what,
            reason: reason.into(),
        }
    }
}
