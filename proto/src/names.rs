//! Name rules and reserved names, as RocketMQ's `TopicValidator`.

/// Prefix of a consumer group's retry topic.
pub const RETRY_PREFIX: &str = "%RETRY%";
/// Prefix of a consumer group's dead-letter topic.
pub const DLQ_PREFIX: &str = "%DLQ%";
/// Longest ordinary topic name.
pub const MAX_TOPIC_LEN: usize = 127;
/// Longest retry or DLQ topic name.
pub const MAX_SYSTEM_TOPIC_LEN: usize = 255;
/// Longest group name: its retry topic (`%RETRY%` + the name) must fit in
/// [`MAX_SYSTEM_TOPIC_LEN`], or the group's first failed delivery would be refused.
pub const MAX_GROUP_LEN: usize = MAX_SYSTEM_TOPIC_LEN - RETRY_PREFIX.len();

/// Whether a topic is a consumer group's retry or dead-letter topic.
pub fn is_system_topic(topic: &str) -> bool {
    topic.starts_with(RETRY_PREFIX) || topic.starts_with(DLQ_PREFIX)
}

/// The consumer group a retry or dead-letter topic belongs to: `g` for `%RETRY%g` and
/// `%DLQ%g`.
pub fn owner_group(topic: &str) -> Option<&str> {
    topic
        .strip_prefix(RETRY_PREFIX)
        .or_else(|| topic.strip_prefix(DLQ_PREFIX))
}

/// The retry topic of a consumer group.
pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_PREFIX}{group}")
}

/// The dead-letter topic of a consumer group.
pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_PREFIX}{group}")
}

fn valid_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'|' || b == b'%')
}

/// Checks a topic name: 1 to 127 characters of `[A-Za-z0-9_|%-]` (255 for `%RETRY%` and
/// `%DLQ%` topics). Returns why it is invalid.
pub fn validate_topic(name: &str) -> Result<(), String> {
    let system = name.starts_with(RETRY_PREFIX) || name.starts_with(DLQ_PREFIX);
    let max = if system {
        MAX_SYSTEM_TOPIC_LEN
    } else {
        MAX_TOPIC_LEN
    };
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name.len() > max {
        return Err(format!(
            "topic name is {} characters, more than {max}",
            name.len()
        ));
    }
    if !valid_chars(name) {
        return Err(format!(
            "topic name {name:?} may contain only letters, digits, '_', '-', '|' and '%'"
        ));
    }
    Ok(())
}

/// Checks a group name: 1 to 248 characters of `[A-Za-z0-9_|-]` ([`MAX_GROUP_LEN`]).
pub fn validate_group(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("group name is empty".into());
    }
    if name.len() > MAX_GROUP_LEN {
        return Err(format!(
            "group name is {} characters, more than {MAX_GROUP_LEN} (its retry topic \
             {RETRY_PREFIX}<group> must fit in {MAX_SYSTEM_TOPIC_LEN})",
            name.len()
        ));
    }
    if !valid_chars(name) || name.contains('%') {
        return Err(format!(
            "group name {name:?} may contain only letters, digits, '_', '-' and '|'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_topic("TopicTest").is_ok());
        assert!(validate_topic(&retry_topic("g1")).is_ok());
        assert!(validate_topic("").is_err());
        assert!(validate_topic("a b").is_err());
        assert!(validate_topic(&"x".repeat(128)).is_err());
        assert!(validate_group("g1").is_ok());
        assert!(validate_group("%g").is_err());
        let longest = "g".repeat(MAX_GROUP_LEN);
        assert!(validate_group(&longest).is_ok());
        assert!(validate_topic(&retry_topic(&longest)).is_ok());
        assert!(validate_topic(&dlq_topic(&longest)).is_ok());
        let e = validate_group(&"g".repeat(MAX_GROUP_LEN + 1)).unwrap_err();
        assert!(e.contains("retry topic"), "{e}");
    }
}
