//! The two header encodings: JSON (every client) and ROCKETMQ binary (Java, rocketmq-rust).
//!
//! JSON requests are read leniently (reference: remoting.md §1.5): no
//! `serializeTypeCurrentRPC` needed, ext values may be strings, numbers or booleans, numbers
//! may be strings, whitespace may follow the object. JSON responses are written as the Java
//! broker's fastjson writes them: keys sorted, null fields left out, ext values strings.
//!
//! Binary layout (`RocketMQSerializable`), big-endian:
//! ```text
//! code i16 | language u8 | version i16 | opaque i32 | flag i32
//! | remark_len i32 | remark | ext_len i32 | (key_len i16 | key | val_len i32 | val)*
//! ```

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::Value;

use crate::command::{language_code, language_name, RemotingCommand, SerializeType};
use crate::error::CodecError;

const JSON: &str = "JSON";
const BINARY: &str = "ROCKETMQ";

/// Decodes a header of the given type: a command without its body.
pub(crate) fn decode(kind: SerializeType, bytes: &[u8]) -> Result<RemotingCommand, CodecError> {
    match kind {
        SerializeType::Json => decode_json(bytes),
        SerializeType::RocketMq => decode_binary(bytes),
    }
}

/// Encodes a command's header in its serialize type.
pub(crate) fn encode(cmd: &RemotingCommand) -> Vec<u8> {
    match cmd.serialize {
        SerializeType::Json => encode_json(cmd),
        SerializeType::RocketMq => encode_binary(cmd),
    }
}

/// A JSON value as the text Java would have sent: strings as they are, numbers and
/// booleans as their literal; `None` for null.
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}

fn int_field(obj: &serde_json::Map<String, Value>, name: &str) -> Result<Option<i32>, CodecError> {
    let Some(v) = obj.get(name) else {
        return Ok(None);
    };
    let n = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    let n = n.ok_or_else(|| CodecError::header(JSON, format!("{name} is not an integer: {v}")))?;
    i32::try_from(n)
        .map(Some)
        .map_err(|_| CodecError::header(JSON, format!("{name} {n} is out of range")))
}

fn decode_json(bytes: &[u8]) -> Result<RemotingCommand, CodecError> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| CodecError::header(JSON, e.to_string()))?;
    let Value::Object(obj) = v else {
        return Err(CodecError::header(JSON, "not a JSON object"));
    };
    let code = int_field(&obj, "code")?.ok_or_else(|| CodecError::header(JSON, "no code"))?;
    let language = match obj.get("language") {
        Some(Value::Number(n)) => language_name(n.as_u64().unwrap_or(7).min(255) as u8).to_owned(),
        Some(Value::String(s)) => s.clone(),
        _ => "OTHER".to_owned(),
    };
    let mut ext = BTreeMap::new();
    match obj.get("extFields") {
        None | Some(Value::Null) => {}
        Some(Value::Object(fields)) => {
            for (k, v) in fields {
                if let Some(t) = text_of(v) {
                    ext.insert(k.clone(), t);
                }
            }
        }
        Some(other) => {
            return Err(CodecError::header(
                JSON,
                format!("extFields is not an object: {other}"),
            ))
        }
    }
    Ok(RemotingCommand {
        code,
        language,
        version: int_field(&obj, "version")?.unwrap_or(0),
        opaque: int_field(&obj, "opaque")?.unwrap_or(0),
        flag: int_field(&obj, "flag")?.unwrap_or(0),
        remark: obj.get("remark").and_then(text_of),
        ext,
        body: Bytes::new(),
        serialize: SerializeType::Json,
    })
}

fn json_string(s: &str) -> String {
    // Serialising a &str cannot fail.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

fn encode_json(cmd: &RemotingCommand) -> Vec<u8> {
    let mut out = String::with_capacity(128 + cmd.ext.len() * 24);
    out.push_str("{\"code\":");
    out.push_str(&cmd.code.to_string());
    if !cmd.ext.is_empty() {
        out.push_str(",\"extFields\":{");
        for (i, (k, v)) in cmd.ext.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&json_string(k));
            out.push(':');
            out.push_str(&json_string(v));
        }
        out.push('}');
    }
    out.push_str(",\"flag\":");
    out.push_str(&cmd.flag.to_string());
    out.push_str(",\"language\":");
    out.push_str(&json_string(&cmd.language));
    out.push_str(",\"opaque\":");
    out.push_str(&cmd.opaque.to_string());
    if let Some(r) = &cmd.remark {
        out.push_str(",\"remark\":");
        out.push_str(&json_string(r));
    }
    out.push_str(",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":");
    out.push_str(&cmd.version.to_string());
    out.push('}');
    out.into_bytes()
}

/// A bounds-checked big-endian reader over a header.
struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], CodecError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| {
                CodecError::header(BINARY, format!("{what} runs past the header's end"))
            })?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn i16(&mut self, what: &str) -> Result<i16, CodecError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &str) -> Result<i32, CodecError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn len(&mut self, what: &str, wide: bool) -> Result<usize, CodecError> {
        let n = if wide {
            i64::from(self.i32(what)?)
        } else {
            i64::from(self.i16(what)?)
        };
        usize::try_from(n).map_err(|_| CodecError::header(BINARY, format!("{what} length {n}")))
    }

    fn string(&mut self, what: &str, wide: bool) -> Result<Option<String>, CodecError> {
        let n = self.len(what, wide)?;
        if n == 0 {
            return Ok(None);
        }
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec())
            .map(Some)
            .map_err(|_| CodecError::header(BINARY, format!("{what} is not UTF-8")))
    }
}

fn decode_binary(bytes: &[u8]) -> Result<RemotingCommand, CodecError> {
    let mut c = Cursor { buf: bytes, at: 0 };
    let code = i32::from(c.i16("code")?);
    let language = language_name(c.take(1, "language")?[0]).to_owned();
    let version = i32::from(c.i16("version")?);
    let opaque = c.i32("opaque")?;
    let flag = c.i32("flag")?;
    let remark = c.string("remark", true)?;
    let ext_len = c.len("ext fields", true)?;
    let ext_bytes = c.take(ext_len, "ext fields")?;
    let mut e = Cursor {
        buf: ext_bytes,
        at: 0,
    };
    let mut ext = BTreeMap::new();
    while e.at < ext_bytes.len() {
        let key = e.string("ext key", false)?;
        let val = e.string("ext value", true)?;
        // A zero-length string decodes as null in Java: an absent field.
        if let (Some(k), Some(v)) = (key, val) {
            ext.insert(k, v);
        }
    }
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext,
        body: Bytes::new(),
        serialize: SerializeType::RocketMq,
    })
}

fn encode_binary(cmd: &RemotingCommand) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + cmd.ext.len() * 24);
    out.extend_from_slice(&(cmd.code as i16).to_be_bytes());
    out.push(language_code(&cmd.language));
    out.extend_from_slice(&(cmd.version as i16).to_be_bytes());
    out.extend_from_slice(&cmd.opaque.to_be_bytes());
    out.extend_from_slice(&cmd.flag.to_be_bytes());
    let remark = cmd.remark.as_deref().unwrap_or("");
    out.extend_from_slice(&(remark.len() as i32).to_be_bytes());
    out.extend_from_slice(remark.as_bytes());
    let mut ext = Vec::new();
    for (k, v) in &cmd.ext {
        // Keys are field names (short); longer ones could not be encoded by Java either.
        let k = &k.as_bytes()[..k.len().min(i16::MAX as usize)];
        ext.extend_from_slice(&(k.len() as i16).to_be_bytes());
        ext.extend_from_slice(k);
        ext.extend_from_slice(&(v.len() as i32).to_be_bytes());
        ext.extend_from_slice(v.as_bytes());
    }
    out.extend_from_slice(&(ext.len() as i32).to_be_bytes());
    out.extend_from_slice(&ext);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_json_request_from_the_cpp_client() {
        // remoting.md §1.3 [cap]: numbers in extFields, no serializeTypeCurrentRPC, a
        // trailing newline.
        let h = decode_json(
            br#"{"code":10,"extFields":{"AccessKey":"","batch":"0","defaultTopicQueueNums":4,"queueId":0,"k":false,"n":null},"flag":0,"language":"CPP","opaque":1,"remark":"","version":63}
"#,
        )
        .unwrap();
        assert_eq!(h.code, 10);
        assert_eq!(h.language, "CPP");
        assert_eq!(h.version, 63);
        assert_eq!(h.ext["defaultTopicQueueNums"], "4");
        assert_eq!(h.ext["queueId"], "0");
        assert_eq!(h.ext["k"], "false");
        assert_eq!(h.ext["AccessKey"], "");
        assert!(!h.ext.contains_key("n"));
    }

    #[test]
    fn worked_binary_example_decodes() {
        // remoting.md §1.4: GET_ROUTEINFO_BY_TOPIC, JAVA, version 407, opaque 1, topic=T.
        let bytes = [
            0x00, 0x69, 0x00, 0x01, 0x97, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0C, 0x00,
            0x05, b't', b'o', b'p', b'i', b'c', 0, 0, 0, 1, b'T',
        ];
        let h = decode_binary(&bytes).unwrap();
        assert_eq!((h.code, h.version, h.opaque, h.flag), (105, 407, 1, 0));
        assert_eq!(h.language, "JAVA");
        assert_eq!(h.remark, None);
        assert_eq!(h.ext["topic"], "T");
    }

    #[test]
    fn json_response_is_fastjson_shaped() {
        let req = RemotingCommand::request(105, 7);
        let resp = RemotingCommand::response_to(&req, 0)
            .with_ext("queueId", 3)
            .with_ext("msgId", "AB");
        let s = String::from_utf8(encode_json(&resp)).unwrap();
        assert_eq!(
            s,
            r#"{"code":0,"extFields":{"msgId":"AB","queueId":"3"},"flag":1,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":407}"#
        );
    }
}
