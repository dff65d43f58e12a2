//! [`Ext`]: typed reads of a request's custom header, parsed as Java's
//! `decodeCommandCustomHeader` does (`Integer.parseInt`, `Long.parseLong`), with the
//! leniency real clients need.

use std::collections::BTreeMap;

use crate::error::CodecError;

/// A request's ext fields.
#[derive(Debug, Clone, Copy)]
pub struct Ext<'a>(pub &'a BTreeMap<String, String>);

impl<'a> Ext<'a> {
    /// A field's text, if present.
    pub fn opt_str(&self, name: &'static str) -> Option<&'a str> {
        self.0.get(name).map(String::as_str)
    }

    /// A field's text; a missing field is an error (`@CFNotNull`).
    ///
    /// # Errors
    /// The field is absent.
    pub fn str(&self, name: &'static str) -> Result<&'a str, CodecError> {
        self.opt_str(name).ok_or(CodecError::MissingField(name))
    }

    /// A non-empty field's text (C++ sends `""` for unused names: empty means absent).
    pub fn opt_nonempty(&self, name: &'static str) -> Option<&'a str> {
        self.opt_str(name).filter(|s| !s.is_empty())
    }

    fn parse<T: std::str::FromStr>(
        &self,
        name: &'static str,
        expected: &'static str,
    ) -> Result<Option<T>, CodecError> {
        let Some(v) = self.opt_str(name) else {
            return Ok(None);
        };
        // Numbers written by JSON encoders may arrive as `4.0`; accept integral floats.
        let t = v.trim();
        if let Ok(n) = t.parse::<T>() {
            return Ok(Some(n));
        }
        let integral = t
            .parse::<f64>()
            .ok()
            .filter(|f| f.fract() == 0.0 && f.is_finite())
            .and_then(|f| format!("{f:.0}").parse::<T>().ok());
        integral.map(Some).ok_or_else(|| CodecError::InvalidField {
            field: name,
            value: v.to_owned(),
            expected,
        })
    }

    /// An optional `Integer`.
    ///
    /// # Errors
    /// Present but not an integer.
    pub fn opt_i32(&self, name: &'static str) -> Result<Option<i32>, CodecError> {
        self.parse(name, "an integer")
    }

    /// A required `Integer`.
    ///
    /// # Errors
    /// Absent or not an integer.
    pub fn i32(&self, name: &'static str) -> Result<i32, CodecError> {
        self.opt_i32(name)?.ok_or(CodecError::MissingField(name))
    }

    /// An optional `Long`.
    ///
    /// # Errors
    /// Present but not an integer.
    pub fn opt_i64(&self, name: &'static str) -> Result<Option<i64>, CodecError> {
        self.parse(name, "an integer")
    }

    /// A required `Long`.
    ///
    /// # Errors
    /// Absent or not an integer.
    pub fn i64(&self, name: &'static str) -> Result<i64, CodecError> {
        self.opt_i64(name)?.ok_or(CodecError::MissingField(name))
    }

    /// A `Boolean` as Java parses it: only `true` (any case) is true; absent is false.
    pub fn java_bool(&self, name: &'static str) -> bool {
        self.opt_str(name)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// A `Boolean` where C++'s `"1"` must count as true as well (the `batch` flag).
    pub fn lenient_bool(&self, name: &'static str) -> bool {
        self.java_bool(name) || self.opt_str(name).is_some_and(|v| v.trim() == "1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_parse_like_java_with_client_leniency() {
        let m: BTreeMap<String, String> = [
            ("a", "12"),
            ("b", " 7 "),
            ("c", "4.0"),
            ("d", "x"),
            ("t", "TRUE"),
            ("one", "1"),
            ("empty", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let e = Ext(&m);
        assert_eq!(e.i32("a").unwrap(), 12);
        assert_eq!(e.i64("b").unwrap(), 7);
        assert_eq!(e.i32("c").unwrap(), 4);
        assert!(matches!(e.i32("d"), Err(CodecError::InvalidField { .. })));
        assert_eq!(e.i32("zz"), Err(CodecError::MissingField("zz")));
        assert!(e.java_bool("t") && !e.java_bool("one") && e.lenient_bool("one"));
        assert_eq!(e.opt_nonempty("empty"), None);
        assert_eq!(e.opt_i32("zz").unwrap(), None);
    }
}
