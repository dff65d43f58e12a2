//! SQL92 property filters, RocketMQ's grammar and semantics (`MessageSelector.bySql`):
//! a consumer subscribes with an expression over message properties, such as
//! `a > 5 AND b = 'abc'`, and the broker delivers only the messages it is TRUE for.
//!
//! Grammar: comparisons `> >= < <= = <>`, `[NOT] BETWEEN x AND y`, `[NOT] IN ('a', ..)`,
//! `IS [NOT] NULL`, `AND OR NOT`, parentheses; constants: numbers (`5`, `-3`, `2.5`,
//! `1e3`), strings in single quotes (`'it''s'`), `TRUE`, `FALSE`, `NULL`. Keywords are
//! case-insensitive; a property name is a letter, `_` or `$` followed by letters, digits,
//! `_`, `$` or `.`. `TAGS` names the message's tag.
//!
//! Semantics, as RocketMQ's evaluator (taken from ActiveMQ's selectors):
//! - Properties are strings; a missing one is NULL. Three-valued logic: a comparison with
//!   NULL is NULL (unknown), `NOT NULL` is NULL, `FALSE AND NULL` is FALSE, `TRUE OR NULL`
//!   is TRUE; a message is delivered only when the whole expression is TRUE.
//! - Against a number, a property is read as a number (an integer constant wants an
//!   integer, a decimal one any number); a property that cannot be read so makes the
//!   message not match, whatever the rest of the expression says. `> >= < <=` need
//!   numbers: comparing with a string or boolean constant is a parse error; two properties
//!   are compared as numbers by them and as text by `=` and `<>`.
//! - Against a string, `=` and `<>` compare text; `IN` is text membership; against
//!   `TRUE`/`FALSE` the property's text is read as a boolean (`true`, any case).
//! - `x <> y` is `NOT (x = y)`: a message without `x` matches neither `x = 'a'` nor
//!   `x <> 'a'`. `BETWEEN` needs its low bound at most its high one.

use std::cmp::Ordering;
use std::fmt;

/// Longest expression accepted, in bytes.
pub const MAX_LEN: usize = 8 << 10;
/// Deepest nesting accepted (parentheses and NOT), so that parsing stays bounded.
const MAX_DEPTH: usize = 64;

/// A parse error, with the byte position it was found at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SQL92 filter {expr:?}: {message} at position {position}")]
pub struct ParseError {
    /// The expression.
    pub expr: String,
    /// What is wrong.
    pub message: String,
    /// Byte offset into the expression.
    pub position: usize,
}

/// A constant.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An integer.
    Int(i64),
    /// A decimal number.
    Float(f64),
    /// A string.
    Str(String),
    /// `TRUE` or `FALSE`.
    Bool(bool),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Value::Bool(b) => write!(f, "{}", if *b { "TRUE" } else { "FALSE" }),
        }
    }
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A message property (`TAGS`: the tag).
    Prop(String),
    /// A constant.
    Const(Value),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `TRUE` or `FALSE` alone.
    Const(bool),
    /// `a OP b`.
    Compare(Operand, Cmp, Operand),
    /// `prop IS NULL` (`negated`: `IS NOT NULL`).
    IsNull(String, bool),
    /// `prop IN (..)` (`negated`: `NOT IN`).
    In(String, Vec<String>, bool),
    /// `AND`.
    And(Box<Expr>, Box<Expr>),
    /// `OR`.
    Or(Box<Expr>, Box<Expr>),
    /// `NOT`.
    Not(Box<Expr>),
}

/// What a filter reads of a message.
pub trait Properties {
    /// The property `name`, if the message has it.
    fn property(&self, name: &str) -> Option<&str>;
    /// The message's tag (empty: none).
    fn tag(&self) -> &str;
}

/// A compiled filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    expr: Expr,
    source: String,
}

impl Filter {
    /// Parses `expr`.
    ///
    /// # Errors
    /// A syntax error or an invalid comparison, with its position.
    pub fn parse(expr: &str) -> Result<Self, ParseError> {
        let err = |message: String, position: usize| ParseError {
            expr: expr.to_owned(),
            message,
            position,
        };
        if expr.len() > MAX_LEN {
            return Err(err(format!("longer than {MAX_LEN} bytes"), MAX_LEN));
        }
        let tokens = lex(expr).map_err(|(m, p)| err(m, p))?;
        let mut p = Parser {
            tokens,
            at: 0,
            depth: 0,
            end: expr.len(),
        };
        let e = p.or().map_err(|(m, pos)| err(m, pos))?;
        if let Some((t, pos)) = p.tokens.get(p.at) {
            return Err(err(
                format!("unexpected {t} after a complete expression"),
                *pos,
            ));
        }
        Ok(Self {
            expr: e,
            source: expr.to_owned(),
        })
    }

    /// The expression as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The parsed expression.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Whether the message is delivered: the expression is TRUE for it.
    pub fn matches(&self, m: &impl Properties) -> bool {
        matches!(eval(&self.expr, m), Ok(Some(true)))
    }
}

// ---- evaluation ----

fn lookup<'a>(m: &'a impl Properties, name: &str) -> Option<&'a str> {
    if name == "TAGS" {
        Some(m.tag()).filter(|t| !t.is_empty())
    } else {
        m.property(name)
    }
}

/// A property read against a constant, or `None` when it cannot be (not matched).
fn convert(text: &str, like: &Value) -> Option<Value> {
    let t = text.trim();
    Some(match like {
        Value::Int(_) => Value::Int(t.parse().ok()?),
        Value::Float(_) => Value::Float(t.parse().ok()?),
        Value::Str(_) => Value::Str(text.to_owned()),
        Value::Bool(_) => Value::Bool(t.eq_ignore_ascii_case("true")),
    })
}

fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Float(y)) => (*x as f64).partial_cmp(y),
        (Value::Float(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// A property that cannot be read as its comparison needs: the message does not match,
/// whatever the rest of the expression says (RocketMQ's evaluator throws).
#[derive(Debug)]
struct Unreadable;

/// What an expression is for one message: TRUE, FALSE or NULL (unknown).
type Truth = Result<Option<bool>, Unreadable>;

/// Both sides as comparable values (`None`: a side is NULL).
fn operands(
    m: &impl Properties,
    l: &Operand,
    r: &Operand,
    ordering: bool,
) -> Result<Option<(Value, Value)>, Unreadable> {
    let side = |o: &Operand| match o {
        Operand::Prop(n) => lookup(m, n).map(|t| Err(t.to_owned())),
        Operand::Const(v) => Some(Ok(v.clone())),
    };
    let (Some(a), Some(b)) = (side(l), side(r)) else {
        return Ok(None);
    };
    let number = |t: &str| t.trim().parse::<f64>().ok().map(Value::Float);
    Ok(Some(match (a, b) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(t), Ok(b)) => (convert(&t, &b).ok_or(Unreadable)?, b),
        (Ok(a), Err(t)) => {
            let b = convert(&t, &a).ok_or(Unreadable)?;
            (a, b)
        }
        // Two properties: text for = and <>, numbers for the others.
        (Err(x), Err(y)) if ordering => {
            (number(&x).ok_or(Unreadable)?, number(&y).ok_or(Unreadable)?)
        }
        (Err(x), Err(y)) => (Value::Str(x), Value::Str(y)),
    }))
}

fn compare(m: &impl Properties, l: &Operand, op: Cmp, r: &Operand) -> Truth {
    let ordering = !matches!(op, Cmp::Eq | Cmp::Ne);
    let Some((a, b)) = operands(m, l, r, ordering)? else {
        return Ok(None);
    };
    let o = order(&a, &b);
    Ok(Some(match op {
        Cmp::Eq => o == Some(Ordering::Equal),
        Cmp::Ne => o != Some(Ordering::Equal),
        Cmp::Gt => o == Some(Ordering::Greater),
        Cmp::Ge => matches!(o, Some(Ordering::Greater | Ordering::Equal)),
        Cmp::Lt => o == Some(Ordering::Less),
        Cmp::Le => matches!(o, Some(Ordering::Less | Ordering::Equal)),
    }))
}

fn eval(e: &Expr, m: &impl Properties) -> Truth {
    Ok(match e {
        Expr::Const(b) => Some(*b),
        Expr::Compare(l, op, r) => compare(m, l, *op, r)?,
        Expr::IsNull(p, negated) => Some(lookup(m, p).is_none() != *negated),
        Expr::In(p, list, negated) => lookup(m, p).map(|v| list.iter().any(|s| s == v) != *negated),
        Expr::And(a, b) => match (eval(a, m)?, eval(b, m)?) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Expr::Or(a, b) => match (eval(a, m)?, eval(b, m)?) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Expr::Not(a) => eval(a, m)?.map(|b| !b),
    })
}

// ---- lexing ----

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Num(Value),
    Str(String),
    Op(Cmp),
    LParen,
    RParen,
    Comma,
    Minus,
    Kw(&'static str),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "property {s}"),
            Tok::Num(v) => write!(f, "number {v}"),
            Tok::Str(s) => write!(f, "string '{s}'"),
            Tok::Op(c) => write!(f, "operator {}", op_text(*c)),
            Tok::LParen => f.write_str("'('"),
            Tok::RParen => f.write_str("')'"),
            Tok::Comma => f.write_str("','"),
            Tok::Minus => f.write_str("'-'"),
            Tok::Kw(k) => f.write_str(k),
        }
    }
}

fn op_text(c: Cmp) -> &'static str {
    match c {
        Cmp::Eq => "=",
        Cmp::Ne => "<>",
        Cmp::Gt => ">",
        Cmp::Ge => ">=",
        Cmp::Lt => "<",
        Cmp::Le => "<=",
    }
}

const KEYWORDS: [&str; 9] = [
    "AND", "OR", "NOT", "BETWEEN", "IN", "IS", "NULL", "TRUE", "FALSE",
];

type Lexed = Vec<(Tok, usize)>;

fn lex(s: &str) -> Result<Lexed, (String, usize)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => (out.push((Tok::LParen, i)), i += 1).1,
            b')' => (out.push((Tok::RParen, i)), i += 1).1,
            b',' => (out.push((Tok::Comma, i)), i += 1).1,
            b'-' => (out.push((Tok::Minus, i)), i += 1).1,
            b'=' => (out.push((Tok::Op(Cmp::Eq), i)), i += 1).1,
            b'<' | b'>' => {
                let next = b.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    (b'<', Some(b'>')) => (Cmp::Ne, 2),
                    (b'<', Some(b'=')) => (Cmp::Le, 2),
                    (b'>', Some(b'=')) => (Cmp::Ge, 2),
                    (b'<', _) => (Cmp::Lt, 1),
                    _ => (Cmp::Gt, 1),
                };
                out.push((Tok::Op(op), i));
                i += len;
            }
            b'\'' => {
                let mut text = String::new();
                i += 1;
                loop {
                    let Some(rest) = s.get(i..) else {
                        return Err(("a string that never ends".into(), start));
                    };
                    let Some(q) = rest.find('\'') else {
                        return Err(("a string that never ends (missing ')".into(), start));
                    };
                    text.push_str(&rest[..q]);
                    i += q + 1;
                    if b.get(i) == Some(&b'\'') {
                        text.push('\'');
                        i += 1;
                    } else {
                        break;
                    }
                }
                out.push((Tok::Str(text), start));
            }
            b'0'..=b'9' | b'.' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    // An exponent's sign belongs to the number.
                    if matches!(b[i], b'e' | b'E') && matches!(b.get(i + 1), Some(b'+' | b'-')) {
                        i += 1;
                    }
                    i += 1;
                }
                let text = &s[start..i];
                let v = if let Ok(n) = text.parse::<i64>() {
                    Value::Int(n)
                } else if let Some(x) = text.parse::<f64>().ok().filter(|x| x.is_finite()) {
                    Value::Float(x)
                } else {
                    return Err((format!("{text:?} is not a number"), start));
                };
                out.push((Tok::Num(v), start));
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b"_$.".contains(&b[i])) {
                    i += 1;
                }
                let word = &s[start..i];
                let upper = word.to_ascii_uppercase();
                match KEYWORDS.iter().find(|k| **k == upper) {
                    Some(k) => out.push((Tok::Kw(k), start)),
                    None => out.push((Tok::Ident(word.to_owned()), start)),
                }
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or('?');
                return Err((format!("unexpected character {ch:?}"), start));
            }
        }
    }
    Ok(out)
}

// ---- parsing ----

struct Parser {
    tokens: Lexed,
    at: usize,
    depth: usize,
    end: usize,
}

type P<T> = Result<T, (String, usize)>;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at).map(|(t, _)| t)
    }

    fn pos(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |(_, p)| *p)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.tokens.get(self.at).map(|(t, _)| t.clone());
        self.at += 1;
        t
    }

    fn eat_kw(&mut self, k: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Kw(x)) if *x == k) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expected<T>(&self, what: &str) -> P<T> {
        let found = self
            .peek()
            .map_or_else(|| "the end".to_owned(), ToString::to_string);
        Err((format!("expected {what}, found {found}"), self.pos()))
    }

    fn deeper(&mut self) -> P<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err((format!("nested deeper than {MAX_DEPTH}"), self.pos()));
        }
        Ok(())
    }

    fn or(&mut self) -> P<Expr> {
        let mut e = self.and()?;
        while self.eat_kw("OR") {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> P<Expr> {
        let mut e = self.not()?;
        while self.eat_kw("AND") {
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Ok(e)
    }

    fn not(&mut self) -> P<Expr> {
        if self.eat_kw("NOT") {
            self.deeper()?;
            let e = Expr::Not(Box::new(self.not()?));
            self.depth -= 1;
            return Ok(e);
        }
        self.predicate()
    }

    /// A constant (with an optional leading minus on numbers).
    fn constant(&mut self) -> P<Option<Value>> {
        let negative = matches!(self.peek(), Some(Tok::Minus));
        if negative {
            self.at += 1;
        }
        let v = match self.peek() {
            Some(Tok::Num(v)) => v.clone(),
            Some(Tok::Str(s)) if !negative => Value::Str(s.clone()),
            Some(Tok::Kw("TRUE")) if !negative => Value::Bool(true),
            Some(Tok::Kw("FALSE")) if !negative => Value::Bool(false),
            _ if negative => return self.expected("a number after '-'"),
            _ => return Ok(None),
        };
        self.at += 1;
        Ok(Some(match v {
            Value::Int(i) if negative => Value::Int(-i),
            Value::Float(x) if negative => Value::Float(-x),
            v => v,
        }))
    }

    fn operand(&mut self) -> P<Operand> {
        if let Some(Tok::Ident(name)) = self.peek() {
            let n = name.clone();
            self.at += 1;
            return Ok(Operand::Prop(n));
        }
        if matches!(self.peek(), Some(Tok::Kw("NULL"))) {
            return Err((
                "NULL cannot be compared: use IS NULL or IS NOT NULL".into(),
                self.pos(),
            ));
        }
        match self.constant()? {
            Some(v) => Ok(Operand::Const(v)),
            None => self.expected("a property or a constant"),
        }
    }

    fn number(&mut self) -> P<Value> {
        let at = self.pos();
        match self.constant()? {
            Some(v @ (Value::Int(_) | Value::Float(_))) => Ok(v),
            Some(v) => Err((format!("BETWEEN needs numbers, not {v}"), at)),
            None => self.expected("a number"),
        }
    }

    fn predicate(&mut self) -> P<Expr> {
        if matches!(self.peek(), Some(Tok::LParen)) {
            self.at += 1;
            self.deeper()?;
            let e = self.or()?;
            self.depth -= 1;
            if self.next() != Some(Tok::RParen) {
                self.at -= 1;
                return self.expected("')'");
            }
            return Ok(e);
        }
        let start = self.pos();
        // TRUE / FALSE alone.
        if let Some(Tok::Kw(k @ ("TRUE" | "FALSE"))) = self.peek() {
            let alone = !matches!(self.tokens.get(self.at + 1), Some((Tok::Op(_), _)));
            if alone {
                let b = *k == "TRUE";
                self.at += 1;
                return Ok(Expr::Const(b));
            }
        }
        let left = self.operand()?;
        let prop = match &left {
            Operand::Prop(p) => Some(p.clone()),
            Operand::Const(_) => None,
        };
        let need_prop = |what: &str| -> P<String> {
            prop.clone()
                .ok_or_else(|| (format!("{what} needs a property on its left"), start))
        };
        if self.eat_kw("IS") {
            let p = need_prop("IS NULL")?;
            let negated = self.eat_kw("NOT");
            if !self.eat_kw("NULL") {
                return self.expected("NULL");
            }
            return Ok(Expr::IsNull(p, negated));
        }
        let negated = self.eat_kw("NOT");
        if self.eat_kw("BETWEEN") {
            let at = self.pos();
            let lo = self.number()?;
            if !self.eat_kw("AND") {
                return self.expected("AND of BETWEEN");
            }
            let hi = self.number()?;
            if order(&lo, &hi) == Some(Ordering::Greater) {
                return Err((
                    format!("BETWEEN {lo} AND {hi}: the low bound is above the high one"),
                    at,
                ));
            }
            let (a, b) = (Operand::Const(lo), Operand::Const(hi));
            return Ok(if negated {
                Expr::Or(
                    Box::new(Expr::Compare(left.clone(), Cmp::Lt, a)),
                    Box::new(Expr::Compare(left, Cmp::Gt, b)),
                )
            } else {
                Expr::And(
                    Box::new(Expr::Compare(left.clone(), Cmp::Ge, a)),
                    Box::new(Expr::Compare(left, Cmp::Le, b)),
                )
            });
        }
        if self.eat_kw("IN") {
            let p = need_prop("IN")?;
            if self.next() != Some(Tok::LParen) {
                self.at -= 1;
                return self.expected("'(' after IN");
            }
            let mut list = Vec::new();
            loop {
                match self.next() {
                    Some(Tok::Str(s)) => list.push(s),
                    _ => {
                        self.at -= 1;
                        return self.expected("a string in the IN list");
                    }
                }
                match self.next() {
                    Some(Tok::Comma) => {}
                    Some(Tok::RParen) => break,
                    _ => {
                        self.at -= 1;
                        return self.expected("',' or ')'");
                    }
                }
            }
            return Ok(Expr::In(p, list, negated));
        }
        if negated {
            return self.expected("BETWEEN or IN after NOT");
        }
        let op_at = self.pos();
        let Some(Tok::Op(op)) = self.peek().cloned() else {
            return self.expected("a comparison (= <> > >= < <=), IS, IN or BETWEEN");
        };
        self.at += 1;
        let right = self.operand()?;
        let is_const = |o: &Operand, f: fn(&Value) -> bool| matches!(o, Operand::Const(v) if f(v));
        if !matches!(op, Cmp::Eq | Cmp::Ne) {
            let not_number = |v: &Value| !matches!(v, Value::Int(_) | Value::Float(_));
            if is_const(&left, not_number) || is_const(&right, not_number) {
                return Err((format!("{} compares numbers only", op_text(op)), op_at));
            }
        }
        Ok(Expr::Compare(left, op, right))
    }
}

#[cfg(test)]
#[path = "sql92_tests.rs"]
mod tests;
