//! Tag expressions: `*` (everything) or `TagA || TagB`.

/// A parsed subscription expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagFilter {
    /// Every message.
    All,
    /// Messages whose tag is one of these.
    Tags(Vec<String>),
}

impl TagFilter {
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
            TagFilter::All => Vec::new(),
            TagFilter::Tags(t) => t.clone(),
        }
    }

    /// The exact client-side check (the broker filters by tag hash, which can collide).
    pub fn matches(&self, tag: &str) -> bool {
        match self {
            TagFilter::All => true,
            TagFilter::Tags(t) => t.iter().any(|x| x == tag),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_expressions() {
        assert_eq!(TagFilter::parse("*").unwrap(), TagFilter::All);
        assert_eq!(TagFilter::parse("").unwrap(), TagFilter::All);
        let f = TagFilter::parse("B || A||B").unwrap();
        assert_eq!(f, TagFilter::Tags(vec!["A".into(), "B".into()]));
        assert!(f.matches("A") && !f.matches("C") && !f.matches(""));
        assert!(TagFilter::parse("A ||").is_err());
    }
}
