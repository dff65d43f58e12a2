//! `produce --property NAME=VALUE`: user properties, and the names that are not theirs.

/// Property names with a meaning to the brokers or to RocketMQ clients, and what to use
/// instead. Any name starting with `__` is refused too: those belong to the broker.
const RESERVED: &[(&str, &str)] = &[
    ("TAGS", "the message's tag: use --tag"),
    ("KEYS", "the message's keys: use --key"),
    ("UNIQ_KEY", "the client sets it to the message id"),
    ("DELAY", "the delay level: use --delay-level"),
    ("TIMER_DELIVER_MS", "a delivery time: use --deliver-at"),
    ("TIMER_DELAY_SEC", "a delivery time: use --deliver-at +30s"),
    ("TIMER_DELAY_MS", "a delivery time: use --deliver-at +30s"),
    (
        "WAIT",
        "RocketMQ's wait-for-store flag; every send here waits",
    ),
    ("RETRY_TOPIC", "the broker sets it on a retried message"),
    (
        "ORIGIN_MSG_ID",
        "the broker sets it on a retried or dead-lettered message",
    ),
    ("MSG_REGION", "the broker sets it for RocketMQ clients"),
    ("TRACE_ON", "the broker sets it for RocketMQ clients"),
];

/// Parses `NAME=VALUE` (the value may be empty and may contain `=`).
///
/// # Errors
/// No `=`, an empty name, a name with whitespace or control characters, a reserved name, or
/// a value with RocketMQ's property separators (`\u{1}`, `\u{2}`): each explained.
pub fn parse(s: &str) -> Result<(String, String), String> {
    let Some((name, value)) = s.split_once('=') else {
        return Err(format!(
            "{s:?} is not NAME=VALUE; write e.g. --property order_id=42"
        ));
    };
    if name.is_empty() {
        return Err(format!(
            "{s:?} has no name before the '='; write e.g. --property order_id=42"
        ));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "property name {name:?} contains whitespace or a control character"
        ));
    }
    if let Some((_, why)) = RESERVED.iter().find(|(r, _)| *r == name) {
        return Err(format!("property {name} is reserved: {why}"));
    }
    if name.starts_with("__") {
        return Err(format!(
            "property {name} is reserved: names starting with \"__\" belong to the broker \
             (for a delivery time use --deliver-at)"
        ));
    }
    if value.contains(['\u{1}', '\u{2}']) {
        return Err(format!(
            "the value of property {name} contains \\u{{1}} or \\u{{2}}, which separate \
             properties on the RocketMQ wire"
        ));
    }
    Ok((name.to_owned(), value.to_owned()))
}

/// Checks that no name is given twice.
///
/// # Errors
/// The first name given twice.
pub fn check_unique(props: &[(String, String)]) -> Result<(), String> {
    for (i, (name, _)) in props.iter().enumerate() {
        if props[..i].iter().any(|(n, _)| n == name) {
            return Err(format!(
                "property {name} is given twice; a message has one value per property"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_parse() {
        assert_eq!(parse("a=1"), Ok(("a".into(), "1".into())));
        assert_eq!(parse("a="), Ok(("a".into(), String::new())));
        assert_eq!(parse("url=x?a=b"), Ok(("url".into(), "x?a=b".into())));
        assert_eq!(parse("tags=lower"), Ok(("tags".into(), "lower".into())));
    }

    #[test]
    fn malformed_and_reserved_properties_are_refused_with_a_reason() {
        for (bad, says) in [
            ("novalue", "not NAME=VALUE"),
            ("=1", "no name"),
            ("a b=1", "whitespace"),
            ("a\u{1}=1", "control"),
            ("a=x\u{2}y", "separate"),
            ("TAGS=x", "use --tag"),
            ("KEYS=x", "use --key"),
            ("UNIQ_KEY=x", "message id"),
            ("DELAY=3", "--delay-level"),
            ("TIMER_DELIVER_MS=1", "--deliver-at"),
            ("__DELIVER_AT=1", "belong to the broker"),
            ("__STARTDELIVERTIME=1", "--deliver-at"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_name_given_twice_is_refused() {
        let p = |n: &str| (n.to_owned(), "v".to_owned());
        assert!(check_unique(&[p("a"), p("b")]).is_ok());
        let e = check_unique(&[p("a"), p("b"), p("a")]).unwrap_err();
        assert!(e.contains("property a is given twice"), "{e}");
    }
}
