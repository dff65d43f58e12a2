//! Subscription expressions: tags (`*` for everything, or `TagA || TagB`) or an SQL92
//! property filter ([`Selector::sql`], evaluated by the broker at pull time).

use std::sync::Arc;

use raftmq_proto::sql92;
use raftmq_proto::MessageExt;

/// What a subscription selects: a tag expression (the default, from a string) or an SQL92
/// expression over the message's properties (RocketMQ's `MessageSelector.bySql`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `*`, empty (everything) or `TagA || TagB`.
    Tag(String),
    /// An SQL92 expression such as `a > 5 AND b = 'abc'` (see [`raftmq_proto::sql92`]).
    Sql(String),
}

impl Selector {
    /// A tag expression.
    pub fn tag(expr: impl Into<String>) -> Self {
        Self::Tag(expr.into())
    }

    /// An SQL92 expression; it is parsed when the consumer starts (or subscribes), and an
    /// invalid one is refused there with its position.
    pub fn sql(expr: impl Into<String>) -> Self {
        Self::Sql(expr.into())
    }
}

impl From<&str> for Selector {
    fn from(e: &str) -> Self {
        Self::Tag(e.to_owned())
    }
}

impl From<String> for Selector {
    fn from(e: String) -> Self {
        Self::Tag(e)
    }
}

impl From<&String> for Selector {
    fn from(e: &String) -> Self {
        Self::Tag(e.clone())
    }
}

/// A parsed subscription expression.
#[derive(Debug, Clone, PartialEq)]
pub enum TagFilter {
    /// Every message.
    All,
    /// Messages whose tag is one of these.
    Tags(Vec<String>),
    /// Messages an SQL92 expression is TRUE for.
    Sql(Arc<sql92::Filter>),
}

impl TagFilter {
    /// Parses a selector.
    ///
    /// # Errors
    /// An empty tag alternative, or an SQL92 expression that does not parse (with where).
    pub fn of(selector: &Selector) -> Result<Self, String> {
        match selector {
            Selector::Tag(e) => Self::parse(e),
            Selector::Sql(e) => sql92::Filter::parse(e)
                .map(|f| Self::Sql(Arc::new(f)))
                .map_err(|e| e.to_string()),
        }
    }

    /// The SQL92 expression to send with pulls, if this is one.
    pub fn sql(&self) -> Option<String> {
        match self {
            TagFilter::Sql(f) => Some(f.source().to_owned()),
            _ => None,
        }
    }

    /// The expression heartbeats report (the console shows it).
    pub fn expression(&self) -> String {
        match self {
            TagFilter::Sql(f) => f.source().to_owned(),
            _ => self.broker_tags().join(" || "),
        }
    }

    /// Parses `*`, an empty string (everything) or `A || B || C`.
    ///
    /// # Errors
    /// An empty alternative such as `A ||`.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let e = expr.trim();
        if e.is_empty() || e == "*" {
            return Ok(TagFilter::All);
        }
        let mut tags = Vec::new();
        for part in e.split("||") {
            let t = part.trim();
            if t.is_empty() {
                return Err(format!("tag expression {expr:?} has an empty tag"));
            }
            if t == "*" {
                return Ok(TagFilter::All);
            }
            tags.push(t.to_owned());
        }
        tags.sort();
        tags.dedup();
        Ok(TagFilter::Tags(tags))
    }

    /// The tags to ask the broker for (empty = all).
    pub fn broker_tags(&self) -> Vec<String> {
        match self {
            TagFilter::All | TagFilter::Sql(_) => Vec::new(),
            TagFilter::Tags(t) => t.clone(),
        }
    }

    /// The exact client-side check (the broker filters by tag hash, which can collide,
    /// and evaluates SQL92 itself: checked again here all the same).
    pub fn matches(&self, m: &MessageExt) -> bool {
        match self {
            TagFilter::All => true,
            TagFilter::Tags(t) => t.contains(&m.tag),
            TagFilter::Sql(f) => f.matches(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: &str, props: &[(&str, &str)]) -> MessageExt {
        MessageExt {
            msg_id: String::new(),
            topic: "T".into(),
            broker_group: raftmq_proto::BrokerGroup("g".into()),
            queue_id: raftmq_proto::QueueId(0),
            queue_offset: raftmq_proto::Offset(0),
            tag: tag.into(),
            keys: Vec::new(),
            properties: props
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: Default::default(),
            flag: 0,
            born_ms: 0,
            store_ms: 0,
            reconsume_times: 0,
        }
    }

    #[test]
    fn parses_expressions() {
        assert_eq!(TagFilter::parse("*").unwrap(), TagFilter::All);
        assert_eq!(TagFilter::parse("").unwrap(), TagFilter::All);
        let f = TagFilter::parse("B || A||B").unwrap();
        assert_eq!(f, TagFilter::Tags(vec!["A".into(), "B".into()]));
        let tagged = |t: &str| msg(t, &[]);
        assert!(f.matches(&tagged("A")) && !f.matches(&tagged("C")) && !f.matches(&tagged("")));
        assert!(TagFilter::parse("A ||").is_err());
    }

    #[test]
    fn sql_selectors_parse_at_once_and_check_properties() {
        let f = TagFilter::of(&Selector::sql("a > 5 AND TAGS = 'T'")).unwrap();
        assert_eq!(f.sql().as_deref(), Some("a > 5 AND TAGS = 'T'"));
        assert!(f.broker_tags().is_empty());
        assert!(f.matches(&msg("T", &[("a", "6")])));
        assert!(!f.matches(&msg("T", &[("a", "5")])));
        assert!(!f.matches(&msg("U", &[("a", "6")])));
        let e = TagFilter::of(&Selector::sql("a >")).unwrap_err();
        assert!(e.contains("position 3"), "{e}");
        assert_eq!(TagFilter::of(&"A || B".into()).unwrap().sql(), None);
    }
}
