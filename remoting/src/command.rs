//! [`RemotingCommand`]: one request or response, header and body.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::SERVER_VERSION;

/// Flag bit 0: the command is a response (`RPC_TYPE`).
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit 1: the request expects no response (`RPC_ONEWAY`). C++ and ali-ons "oneway"
/// requests do not set it, so only requests with this bit get no answer.
pub const FLAG_ONEWAY: i32 = 2;

/// How a command's header is encoded (the top byte of the header-length word).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SerializeType {
    /// `{"code":..}`: every client's default, the only one C++ and ali-ons read.
    Json,
    /// RocketMQ's binary layout (Java and rocketmq-rust, when configured).
    RocketMq,
}

impl SerializeType {
    /// The type byte.
    pub fn byte(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        }
    }

    /// The type of a type byte, if known.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(SerializeType::Json),
            1 => Some(SerializeType::RocketMq),
            _ => None,
        }
    }
}

/// LanguageCode names by number (`LanguageCode.java`, plus 5.x `NODE_JS`).
const LANGUAGES: [&str; 14] = [
    "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP",
    "OMS", "RUST", "NODE_JS",
];

/// The name of a language code (`OTHER` when unknown).
pub fn language_name(code: u8) -> &'static str {
    LANGUAGES.get(usize::from(code)).copied().unwrap_or("OTHER")
}

/// The number of a language name (`OTHER` = 7 when unknown).
pub fn language_code(name: &str) -> u8 {
    LANGUAGES
        .iter()
        .position(|l| l.eq_ignore_ascii_case(name))
        .and_then(|i| u8::try_from(i).ok())
        .unwrap_or(7)
}

/// One remoting command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotingCommand {
    /// Request code, or response code in a response.
    pub code: i32,
    /// The sender's language name (`JAVA`, `CPP`, ...). Never used to decide behaviour:
    /// ali-ons says `JAVA`.
    pub language: String,
    /// The sender's `MQVersion` ordinal.
    pub version: i32,
    /// Request id; a response carries its request's.
    pub opaque: i32,
    /// [`FLAG_RESPONSE`] and [`FLAG_ONEWAY`] bits.
    pub flag: i32,
    /// Free text (errors); no client parses it.
    pub remark: Option<String>,
    /// The custom header, every value as a string (numbers and booleans sent by C++ and
    /// ali-ons are converted to their text when decoded).
    pub ext: BTreeMap<String, String>,
    /// The body.
    pub body: Bytes,
    /// How the header was (or is to be) encoded.
    pub serialize: SerializeType,
}

impl RemotingCommand {
    /// A request (as a client sends it), JSON-encoded.
    pub fn request(code: i32, opaque: i32) -> Self {
        Self {
            code,
            language: "JAVA".to_owned(),
            version: SERVER_VERSION,
            opaque,
            flag: 0,
            remark: None,
            ext: BTreeMap::new(),
            body: Bytes::new(),
            serialize: SerializeType::Json,
        }
    }

    /// A response to `req`: same opaque, same serialize type, `code`, the server version.
    pub fn response_to(req: &RemotingCommand, code: i32) -> Self {
        Self {
            code,
            language: "JAVA".to_owned(),
            version: SERVER_VERSION,
            opaque: req.opaque,
            flag: FLAG_RESPONSE,
            remark: None,
            ext: BTreeMap::new(),
            body: Bytes::new(),
            serialize: req.serialize,
        }
    }

    /// Whether this is a response.
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// Whether the sender expects no answer.
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// Sets the remark.
    pub fn with_remark(mut self, remark: impl Into<String>) -> Self {
        self.remark = Some(remark.into());
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Adds an ext field (written as a JSON string).
    pub fn with_ext(mut self, name: &str, value: impl ToString) -> Self {
        self.ext.insert(name.to_owned(), value.to_string());
        self
    }

    /// A field of the custom header.
    pub fn ext_str(&self, name: &str) -> Option<&str> {
        self.ext.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_codes_round_trip() {
        for (i, name) in LANGUAGES.iter().enumerate() {
            assert_eq!(language_name(i as u8), *name);
            assert_eq!(usize::from(language_code(name)), i);
        }
        assert_eq!(language_name(200), "OTHER");
        assert_eq!(language_code("cobol"), 7);
        assert_eq!(language_code("cpp"), 1);
    }

    #[test]
    fn responses_mirror_the_request() {
        let mut req = RemotingCommand::request(105, 42);
        req.serialize = SerializeType::RocketMq;
        let resp = RemotingCommand::response_to(&req, 17);
        assert_eq!(resp.opaque, 42);
        assert_eq!(resp.serialize, SerializeType::RocketMq);
        assert!(resp.is_response() && !resp.is_oneway());
        assert_eq!(resp.version, SERVER_VERSION);
    }
}
