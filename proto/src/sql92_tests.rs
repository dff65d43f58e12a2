use proptest::prelude::*;

use super::*;

/// A message with these properties and tag.
struct Msg(Vec<(&'static str, &'static str)>, &'static str);

impl Properties for Msg {
    fn property(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
    fn tag(&self) -> &str {
        self.1
    }
}

fn m(props: &[(&'static str, &'static str)]) -> Msg {
    Msg(props.to_vec(), "TagA")
}

fn is(expr: &str, msg: &Msg) -> bool {
    Filter::parse(expr)
        .unwrap_or_else(|e| panic!("{e}"))
        .matches(msg)
}

#[test]
fn numeric_comparisons_read_properties_as_numbers() {
    let a10 = m(&[("a", "10")]);
    for (expr, want) in [
        ("a > 5", true),
        ("a > 10", false),
        ("a >= 10", true),
        ("a < 11", true),
        ("a <= 9", false),
        ("a = 10", true),
        ("a <> 10", false),
        ("a <> 11", true),
        ("a > 9.5", true),
        ("a = 10.0", true),
        ("a > -3", true),
        ("5 < a", true),
        ("a BETWEEN 0 AND 10", true),
        ("a BETWEEN 11 AND 20", false),
        ("a NOT BETWEEN 11 AND 20", true),
        ("a not between 0 and 10", false),
    ] {
        assert_eq!(is(expr, &a10), want, "{expr}");
    }
    // A decimal property against an integer constant cannot be read as an integer.
    assert!(!is("a > 1", &m(&[("a", "2.5")])));
    assert!(is("a > 1.0", &m(&[("a", "2.5")])));
}

#[test]
fn strings_compare_by_equality_and_membership() {
    let b = m(&[("b", "abc")]);
    for (expr, want) in [
        ("b = 'abc'", true),
        ("b = 'ABC'", false),
        ("b <> 'x'", true),
        ("b IN ('x', 'abc')", true),
        ("b IN ('x')", false),
        ("b NOT IN ('x', 'y')", true),
        ("b NOT IN ('abc')", false),
        ("TAGS = 'TagA'", true),
        ("TAGS IN ('TagB', 'TagA')", true),
    ] {
        assert_eq!(is(expr, &b), want, "{expr}");
    }
    assert!(is("q = 'it''s'", &m(&[("q", "it's")])));
}

#[test]
fn nulls_follow_three_valued_logic() {
    let none = m(&[]);
    for (expr, want) in [
        ("a IS NULL", true),
        ("a IS NOT NULL", false),
        ("a = 1", false),
        ("a <> 1", false),
        ("NOT (a = 1)", false),
        ("a IN ('x')", false),
        ("a NOT IN ('x')", false),
        ("a BETWEEN 1 AND 2", false),
        ("a > 1 OR TRUE", true),
        ("a > 1 AND FALSE", false),
        ("NOT (a > 1 AND FALSE)", true),
        ("a > 1 OR b IS NULL", true),
        ("TAGS IS NOT NULL", true),
    ] {
        assert_eq!(is(expr, &none), want, "{expr}");
    }
    assert!(is("TAGS IS NULL", &Msg(Vec::new(), "")));
}

#[test]
fn a_type_mismatch_does_not_match_and_bad_comparisons_do_not_parse() {
    // A property that is no number, against a number: no match, even inside OR TRUE.
    let text = m(&[("a", "abc")]);
    assert!(!is("a > 5", &text));
    assert!(!is("a = 5", &text));
    assert!(!is("a <> 5", &text));
    assert!(!is("a > 5 OR TRUE", &text));
    // Booleans are read from text.
    assert!(is("f = TRUE", &m(&[("f", "true")])));
    assert!(is("f = FALSE", &m(&[("f", "no")])));
    // Two properties: numbers for ordering, text for equality.
    let two = m(&[("x", "2"), ("y", "10"), ("z", "2.0")]);
    assert!(is("x < y", &two));
    assert!(!is("x = z", &two));
    assert!(!is("x < b", &m(&[("x", "1"), ("b", "abc")])));
    for bad in [
        "a > 'abc'",
        "a >= TRUE",
        "a = NULL",
        "a BETWEEN 5 AND 1",
        "a BETWEEN 'a' AND 'b'",
        "'x' IN ('x')",
        "a IN (1, 2)",
    ] {
        assert!(Filter::parse(bad).is_err(), "{bad} parsed");
    }
}

#[test]
fn parse_errors_say_where() {
    for (bad, at, says) in [
        ("a >", 3, "expected a property or a constant, found the end"),
        ("a > 5 AND", 9, "found the end"),
        ("a = 'open", 4, "never ends"),
        ("(a = 1", 6, "expected ')'"),
        ("a == 1", 3, "found operator ="),
        ("a # 1", 2, "unexpected character '#'"),
        ("a = 1 b", 6, "after a complete expression"),
        ("a NOT 5", 6, "BETWEEN or IN after NOT"),
        ("a > 12abc", 4, "not a number"),
    ] {
        let e = Filter::parse(bad).expect_err(bad);
        assert_eq!(e.position, at, "{bad}: {e}");
        assert!(e.to_string().contains(says), "{bad}: {e}");
    }
}

#[test]
fn precedence_keywords_and_names() {
    let msg = m(&[("a", "1"), ("b", "2"), ("x.y_$z", "3")]);
    // AND binds tighter than OR.
    assert!(is("a = 9 AND b = 9 OR b = 2", &msg));
    assert!(!is("a = 9 AND (b = 9 OR b = 2)", &msg));
    assert!(is("a = 1 and not b = 3", &msg));
    assert!(is("x.y_$z = 3", &msg));
    assert!(is("TRUE", &msg) && !is("FALSE", &msg));
    assert!(is("a = 1e0", &msg));
    let deep = format!("{}a = 1{}", "(".repeat(100), ")".repeat(100));
    assert!(Filter::parse(&deep).is_err());
    assert!(Filter::parse(&"x".repeat(MAX_LEN + 1)).is_err());
}

proptest! {
    /// Arbitrary text never panics the parser, and what parses never panics evaluation.
    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,80}") {
        if let Ok(f) = Filter::parse(&s) {
            let _ = f.matches(&m(&[("a", "1"), ("b", "x")]));
        }
    }

    /// Text made of the grammar's own pieces never panics either.
    #[test]
    fn grammar_soup_never_panics(parts in proptest::collection::vec(
        prop_oneof![
            Just("a"), Just("b"), Just("TAGS"), Just("("), Just(")"), Just("AND"),
            Just("OR"), Just("NOT"), Just("BETWEEN"), Just("IN"), Just("IS"), Just("NULL"),
            Just("TRUE"), Just("FALSE"), Just("="), Just("<>"), Just(">"), Just(">="),
            Just("<"), Just("<="), Just(","), Just("-"), Just("5"), Just("2.5"),
            Just("'s'"), Just("'"),
        ],
        0..24,
    )) {
        let s = parts.join(" ");
        if let Ok(f) = Filter::parse(&s) {
            let _ = f.matches(&m(&[("a", "1"), ("b", "x")]));
        }
    }
}
