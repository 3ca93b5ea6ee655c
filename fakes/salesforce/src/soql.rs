//! The SOQL subset of this fake: one object, a field list, WHERE, ORDER BY, LIMIT.
//!
//! `parse` turns text into a [`Query`]; `Query::bind` checks it against the schema (unknown
//! object → `INVALID_TYPE`, unknown field or mistyped literal → `INVALID_FIELD`) and makes every
//! field name canonical; `Query::matches` evaluates WHERE. The same evaluator serves REST
//! queries and PushTopic matching.

use std::cmp::Ordering;

use chrono::{DateTime, FixedOffset, Utc};

use crate::ids;
use crate::schema::{self, FieldType, ObjectDef};

/// A typed SOQL value.
#[derive(Clone, Debug, PartialEq)]
pub enum SValue {
    Null,
    Str(String),
    Num(f64),
    Bool(bool),
    DateTime(DateTime<Utc>),
}

impl SValue {
    /// Equality as SOQL sees it: strings compare case-insensitively.
    fn soql_eq(&self, other: &SValue) -> bool {
        match (self, other) {
            (SValue::Str(a), SValue::Str(b)) if a.is_ascii() && b.is_ascii() => {
                a.eq_ignore_ascii_case(b)
            }
            (SValue::Str(a), SValue::Str(b)) => a.to_lowercase() == b.to_lowercase(),
            (a, b) => a == b,
        }
    }

    /// Ordering of two non-null values of the same type.
    fn soql_cmp(&self, other: &SValue) -> Option<Ordering> {
        match (self, other) {
            (SValue::Str(a), SValue::Str(b)) if a.is_ascii() && b.is_ascii() => Some(
                a.bytes()
                    .map(|c| c.to_ascii_lowercase())
                    .cmp(b.bytes().map(|c| c.to_ascii_lowercase())),
            ),
            (SValue::Str(a), SValue::Str(b)) => Some(a.to_lowercase().cmp(&b.to_lowercase())),
            (SValue::Num(a), SValue::Num(b)) => a.partial_cmp(b),
            (SValue::Bool(a), SValue::Bool(b)) => Some(a.cmp(b)),
            (SValue::DateTime(a), SValue::DateTime(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    MalformedQuery,
    InvalidField,
    InvalidType,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedQuery => "MALFORMED_QUERY",
            ErrorCode::InvalidField => "INVALID_FIELD",
            ErrorCode::InvalidType => "INVALID_TYPE",
        }
    }
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct SoqlError {
    pub code: ErrorCode,
    pub message: String,
}

fn malformed(message: impl Into<String>) -> SoqlError {
    SoqlError {
        code: ErrorCode::MalformedQuery,
        message: message.into(),
    }
}

fn invalid_field(message: impl Into<String>) -> SoqlError {
    SoqlError {
        code: ErrorCode::InvalidField,
        message: message.into(),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Cmp {
        field: String,
        op: CmpOp,
        value: SValue,
    },
    In {
        field: String,
        negated: bool,
        values: Vec<SValue>,
    },
    Like {
        field: String,
        pattern: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct OrderItem {
    pub field: String,
    pub descending: bool,
    pub nulls_first: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub object: String,
    pub fields: Vec<String>,
    pub filter: Option<Expr>,
    pub order_by: Vec<OrderItem>,
    pub limit: Option<u64>,
}

// ---------------------------------------------------------------- tokens

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(f64),
    DateTime(DateTime<Utc>),
    Comma,
    LParen,
    RParen,
    Op(CmpOp),
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Word(w) => w.clone(),
        Tok::Str(s) => format!("'{s}'"),
        Tok::Num(n) => n.to_string(),
        Tok::DateTime(d) => d.to_rfc3339(),
        Tok::Comma => ",".into(),
        Tok::LParen => "(".into(),
        Tok::RParen => ")".into(),
        Tok::Op(_) => "operator".into(),
    }
}

fn tokenize(text: &str) -> Result<Vec<Tok>, SoqlError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            c if c.is_whitespace() => i += 1,
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            '=' => {
                out.push(Tok::Op(CmpOp::Eq));
                i += 1;
            }
            '!' | '<' | '>' => {
                let next = chars.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    ('!', Some('=')) => (CmpOp::Ne, 2),
                    ('<', Some('>')) => (CmpOp::Ne, 2),
                    ('<', Some('=')) => (CmpOp::Le, 2),
                    ('>', Some('=')) => (CmpOp::Ge, 2),
                    ('<', _) => (CmpOp::Lt, 1),
                    ('>', _) => (CmpOp::Gt, 1),
                    _ => return Err(malformed("unexpected token: '!'")),
                };
                out.push(Tok::Op(op));
                i += len;
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(malformed("unterminated string literal")),
                        Some('\\') => {
                            let esc = chars
                                .get(i + 1)
                                .ok_or_else(|| malformed("unterminated string literal"))?;
                            s.push(match esc {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                other => *other,
                            });
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(s));
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                let start = i;
                i += 1;
                while let Some(&ch) = chars.get(i) {
                    if ch.is_ascii_alphanumeric() || matches!(ch, '.' | ':' | '-' | '+') {
                        i += 1;
                    } else {
                        break;
                    }
                }
                let word: String = chars.get(start..i).unwrap_or_default().iter().collect();
                if let Ok(n) = word.parse::<f64>() {
                    out.push(Tok::Num(n));
                } else if let Ok(d) = DateTime::parse_from_rfc3339(&word) {
                    out.push(Tok::DateTime(d.with_timezone(&Utc)));
                } else {
                    return Err(malformed(format!(
                        "unexpected token: '{word}' (only numbers and date-time literals such as 2024-01-01T00:00:00Z are supported)"
                    )));
                }
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while let Some(&ch) = chars.get(i) {
                    if ch.is_alphanumeric() || ch == '_' || ch == '.' || ch == ':' {
                        i += 1;
                    } else {
                        break;
                    }
                }
                out.push(Tok::Word(
                    chars.get(start..i).unwrap_or_default().iter().collect(),
                ));
            }
            other => return Err(malformed(format!("unexpected character: '{other}'"))),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- parser

/// How deep parentheses may nest in a WHERE clause. The parser recurses per level, so a deeper
/// query is refused with `MALFORMED_QUERY` rather than allowed to overflow the stack.
pub const MAX_NESTING: usize = 64;

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    /// Parentheses open around the current position.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn peek_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        let yes = self.peek_kw(kw);
        if yes {
            self.pos += 1;
        }
        yes
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), SoqlError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("expected {kw}")))
        }
    }

    fn unexpected(&self, what: &str) -> SoqlError {
        match self.peek() {
            Some(t) => malformed(format!("unexpected token: '{}' ({what})", describe(t))),
            None => malformed(format!("unexpected end of query ({what})")),
        }
    }

    fn ident(&mut self, what: &str) -> Result<String, SoqlError> {
        self.name(what, false)
    }

    /// A field name, or (with `object`) an object name, which may be a keyword such as `Group`.
    fn name(&mut self, what: &str, object: bool) -> Result<String, SoqlError> {
        match self.peek() {
            Some(Tok::Word(w)) if object || !is_reserved(w) => {
                let w = w.clone();
                self.pos += 1;
                if w.contains('.') {
                    return Err(malformed(format!(
                        "relationship field '{w}' is not supported by this fake (only fields of the queried object)"
                    )));
                }
                if w.contains(':') {
                    return Err(malformed(format!(
                        "'{w}': date literals such as LAST_N_DAYS:n are not supported by this fake"
                    )));
                }
                Ok(w)
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn query(&mut self) -> Result<Query, SoqlError> {
        self.expect_kw("SELECT")?;
        let mut fields = Vec::new();
        loop {
            if matches!(self.toks.get(self.pos + 1), Some(Tok::LParen)) {
                return Err(malformed(
                    "functions and aggregates (COUNT(), FIELDS(), ...) are not supported by this fake",
                ));
            }
            if self.peek_kw("SELECT") || self.peek() == Some(&Tok::LParen) {
                return Err(malformed("subqueries are not supported by this fake"));
            }
            fields.push(self.ident("expected a field name")?);
            if self.peek() == Some(&Tok::Comma) {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.expect_kw("FROM")?;
        let object = self.name("expected an object name", true)?;
        if self.peek() == Some(&Tok::Comma) {
            return Err(malformed("only one object per query is supported"));
        }
        let filter = if self.eat_kw("WHERE") {
            Some(self.condition()?)
        } else {
            None
        };
        let mut order_by = Vec::new();
        if self.eat_kw("ORDER") {
            self.expect_kw("BY")?;
            loop {
                let field = self.ident("expected a field name after ORDER BY")?;
                let descending = if self.eat_kw("DESC") {
                    true
                } else {
                    self.eat_kw("ASC");
                    false
                };
                let nulls_first = if self.eat_kw("NULLS") {
                    if self.eat_kw("FIRST") {
                        true
                    } else {
                        self.expect_kw("LAST")?;
                        false
                    }
                } else {
                    !descending
                };
                order_by.push(OrderItem {
                    field,
                    descending,
                    nulls_first,
                });
                if self.peek() == Some(&Tok::Comma) {
                    self.pos += 1;
                } else {
                    break;
                }
            }
        }
        let limit = if self.eat_kw("LIMIT") {
            match self.next() {
                Some(Tok::Num(n)) if n >= 0.0 && n.fract() == 0.0 => Some(n as u64),
                _ => {
                    return Err(malformed(
                        "LIMIT must be followed by a non-negative integer",
                    ));
                }
            }
        } else {
            None
        };
        if let Some(t) = self.peek() {
            let word = describe(t);
            let hint = if is_reserved(&word) {
                format!("{} is not supported by this fake", word.to_uppercase())
            } else {
                "expected end of query".to_owned()
            };
            return Err(malformed(format!("unexpected token: '{word}' ({hint})")));
        }
        Ok(Query {
            object,
            fields,
            filter,
            order_by,
            limit,
        })
    }

    /// `term (AND term)*` or `term (OR term)*`; mixing needs parentheses, as in SOQL.
    fn condition(&mut self) -> Result<Expr, SoqlError> {
        let first = self.term()?;
        let mut items = vec![first];
        let mut conj: Option<bool> = None;
        loop {
            let is_and = if self.peek_kw("AND") {
                true
            } else if self.peek_kw("OR") {
                false
            } else {
                break;
            };
            if conj.is_some_and(|c| c != is_and) {
                return Err(malformed(
                    "mixing AND and OR requires parentheses, e.g. (a AND b) OR c",
                ));
            }
            conj = Some(is_and);
            self.pos += 1;
            items.push(self.term()?);
        }
        Ok(match conj {
            None => items.pop().unwrap_or(Expr::And(Vec::new())),
            Some(true) => Expr::And(items),
            Some(false) => Expr::Or(items),
        })
    }

    fn term(&mut self) -> Result<Expr, SoqlError> {
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            self.depth += 1;
            if self.depth > MAX_NESTING {
                return Err(malformed(format!(
                    "parentheses nest more than {MAX_NESTING} deep"
                )));
            }
            let e = self.condition()?;
            if self.next() != Some(Tok::RParen) {
                return Err(malformed("missing closing parenthesis"));
            }
            self.depth -= 1;
            return Ok(e);
        }
        if self.peek_kw("NOT") {
            return Err(malformed(
                "the NOT operator is not supported by this fake; use != or NOT IN",
            ));
        }
        let field = self.ident("expected a field name in WHERE")?;
        match self.next() {
            Some(Tok::Op(op)) => {
                let value = self.literal()?;
                Ok(Expr::Cmp { field, op, value })
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("LIKE") => match self.next() {
                Some(Tok::Str(pattern)) => Ok(Expr::Like { field, pattern }),
                _ => Err(malformed("LIKE must be followed by a string literal")),
            },
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("IN") => self.in_list(field, false),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("NOT") => {
                self.expect_kw("IN")?;
                self.in_list(field, true)
            }
            Some(Tok::Word(w))
                if w.eq_ignore_ascii_case("INCLUDES") || w.eq_ignore_ascii_case("EXCLUDES") =>
            {
                Err(malformed(format!(
                    "{} is not supported by this fake",
                    w.to_uppercase()
                )))
            }
            Some(t) => Err(malformed(format!(
                "unexpected token: '{}' (expected an operator: = != < <= > >= IN NOT IN LIKE)",
                describe(&t)
            ))),
            None => Err(malformed("unexpected end of query (expected an operator)")),
        }
    }

    fn in_list(&mut self, field: String, negated: bool) -> Result<Expr, SoqlError> {
        if self.next() != Some(Tok::LParen) {
            return Err(malformed("IN must be followed by a parenthesised list"));
        }
        if self.peek_kw("SELECT") {
            return Err(malformed(
                "semi-joins (IN (SELECT ...)) are not supported by this fake",
            ));
        }
        let mut values = vec![self.literal()?];
        loop {
            match self.next() {
                Some(Tok::Comma) => values.push(self.literal()?),
                Some(Tok::RParen) => break,
                _ => return Err(malformed("malformed IN list")),
            }
        }
        Ok(Expr::In {
            field,
            negated,
            values,
        })
    }

    fn literal(&mut self) -> Result<SValue, SoqlError> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(SValue::Str(s)),
            Some(Tok::Num(n)) => Ok(SValue::Num(n)),
            Some(Tok::DateTime(d)) => Ok(SValue::DateTime(d)),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Ok(SValue::Null),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Ok(SValue::Bool(true)),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Ok(SValue::Bool(false)),
            Some(t) => Err(malformed(format!(
                "unexpected token: '{}' (expected a literal: 'string', number, true, false, null or a date-time such as 2024-01-01T00:00:00Z; date literals like TODAY are not supported by this fake)",
                describe(&t)
            ))),
            None => Err(malformed("unexpected end of query (expected a value)")),
        }
    }
}

fn is_reserved(w: &str) -> bool {
    const RESERVED: &[&str] = &[
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "LIMIT", "ASC",
        "DESC", "NULLS", "FIRST", "LAST", "GROUP", "HAVING", "OFFSET", "WITH", "FOR", "USING",
        "TYPEOF", "INCLUDES", "EXCLUDES", "NULL", "TRUE", "FALSE",
    ];
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(w))
}

/// Parses a query of the supported subset.
pub fn parse(text: &str) -> Result<Query, SoqlError> {
    let toks = tokenize(text)?;
    Parser {
        toks,
        pos: 0,
        depth: 0,
    }
    .query()
}

// ---------------------------------------------------------------- binding

fn no_such_column(field: &str, object: &str) -> SoqlError {
    invalid_field(format!(
        "No such column '{field}' on entity '{object}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names."
    ))
}

/// The error for an unknown object in a query.
pub fn unsupported_object(name: &str) -> SoqlError {
    SoqlError {
        code: ErrorCode::InvalidType,
        message: format!(
            "sObject type '{name}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names."
        ),
    }
}

impl Query {
    /// Resolves the object and every field against the schema, making names canonical and
    /// checking literal types; returns the object definition.
    pub fn bind(&mut self) -> Result<&'static ObjectDef, SoqlError> {
        let obj = schema::object(&self.object).ok_or_else(|| unsupported_object(&self.object))?;
        self.object = obj.name.to_owned();
        let mut seen = Vec::new();
        for f in &mut self.fields {
            let def = obj.field(f).ok_or_else(|| no_such_column(f, obj.name))?;
            if seen.contains(&def.name) {
                return Err(malformed(format!("duplicate field selected: {}", def.name)));
            }
            seen.push(def.name);
            *f = def.name.to_owned();
        }
        if let Some(e) = &mut self.filter {
            bind_expr(e, obj)?;
        }
        for o in &mut self.order_by {
            let def = obj
                .field(&o.field)
                .ok_or_else(|| no_such_column(&o.field, obj.name))?;
            o.field = def.name.to_owned();
        }
        Ok(obj)
    }

    /// Does the record (read through `get`, by canonical field name) match WHERE?
    pub fn matches(&self, get: &dyn Fn(&str) -> SValue) -> bool {
        self.filter.as_ref().is_none_or(|e| eval(e, get))
    }

    /// Canonical names of the fields WHERE refers to.
    pub fn where_fields(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(e) = &self.filter {
            collect_fields(e, &mut out);
        }
        out
    }

    /// Compares two records by ORDER BY.
    pub fn compare(&self, a: &dyn Fn(&str) -> SValue, b: &dyn Fn(&str) -> SValue) -> Ordering {
        self.compare_keys(&self.sort_key(a), &self.sort_key(b))
    }

    /// A record's ORDER BY values, to sort many records without reading each one again for
    /// every comparison.
    pub fn sort_key(&self, get: &dyn Fn(&str) -> SValue) -> Vec<SValue> {
        self.order_by.iter().map(|o| get(&o.field)).collect()
    }

    /// Compares two [`Query::sort_key`]s by ORDER BY.
    pub fn compare_keys(&self, a: &[SValue], b: &[SValue]) -> Ordering {
        for (o, (va, vb)) in self.order_by.iter().zip(a.iter().zip(b)) {
            let ord = match (va, vb) {
                (SValue::Null, SValue::Null) => Ordering::Equal,
                (SValue::Null, _) => {
                    if o.nulls_first {
                        Ordering::Less
                    } else {
                        Ordering::Greater
                    }
                }
                (_, SValue::Null) => {
                    if o.nulls_first {
                        Ordering::Greater
                    } else {
                        Ordering::Less
                    }
                }
                _ => {
                    let ord = va.soql_cmp(vb).unwrap_or(Ordering::Equal);
                    if o.descending { ord.reverse() } else { ord }
                }
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }
}

fn collect_fields(e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::And(items) | Expr::Or(items) => items.iter().for_each(|i| collect_fields(i, out)),
        Expr::Cmp { field, .. } | Expr::In { field, .. } | Expr::Like { field, .. } => {
            if !out.contains(field) {
                out.push(field.clone());
            }
        }
    }
}

fn bind_field(field: &mut String, obj: &ObjectDef) -> Result<FieldType, SoqlError> {
    let def = obj
        .field(field)
        .ok_or_else(|| no_such_column(field, obj.name))?;
    if def.ty == FieldType::TextArea {
        return Err(invalid_field(format!(
            "field '{}' can not be filtered in a query call",
            def.name
        )));
    }
    *field = def.name.to_owned();
    Ok(def.ty)
}

fn check_literal(field: &str, ty: FieldType, value: &mut SValue) -> Result<(), SoqlError> {
    let ok = match (&*value, ty) {
        (SValue::Null, _) => true,
        (SValue::Str(s), FieldType::Id | FieldType::Reference(_)) => {
            if s.len() == 15
                && let Some(long) = ids::to_18(s)
            {
                *value = SValue::Str(long);
            }
            true
        }
        (SValue::Str(_), t) => t.is_stringish(),
        (SValue::Num(_), t) => t == FieldType::Number,
        (SValue::Bool(_), t) => t == FieldType::Checkbox,
        (SValue::DateTime(_), t) => t == FieldType::DateTime,
    };
    if ok {
        return Ok(());
    }
    let quoted = if matches!(value, SValue::Str(_)) {
        " and should not be enclosed in quotes"
    } else {
        ""
    };
    Err(invalid_field(format!(
        "value of filter criterion for field '{field}' must be of type {}{quoted}",
        ty.type_name()
    )))
}

fn bind_expr(e: &mut Expr, obj: &ObjectDef) -> Result<(), SoqlError> {
    match e {
        Expr::And(items) | Expr::Or(items) => items.iter_mut().try_for_each(|i| bind_expr(i, obj)),
        Expr::Cmp { field, value, .. } => {
            let ty = bind_field(field, obj)?;
            check_literal(field, ty, value)
        }
        Expr::In { field, values, .. } => {
            let ty = bind_field(field, obj)?;
            values
                .iter_mut()
                .try_for_each(|v| check_literal(field, ty, v))
        }
        Expr::Like { field, .. } => {
            let ty = bind_field(field, obj)?;
            if ty.is_stringish() {
                Ok(())
            } else {
                Err(invalid_field(format!(
                    "invalid operator on field '{field}': LIKE needs a text field"
                )))
            }
        }
    }
}

// ---------------------------------------------------------------- evaluation

fn eval(e: &Expr, get: &dyn Fn(&str) -> SValue) -> bool {
    match e {
        Expr::And(items) => items.iter().all(|i| eval(i, get)),
        Expr::Or(items) => items.iter().any(|i| eval(i, get)),
        Expr::Cmp { field, op, value } => {
            let actual = get(field);
            match op {
                CmpOp::Eq => actual.soql_eq(value),
                CmpOp::Ne => !actual.soql_eq(value),
                _ => {
                    if actual == SValue::Null || *value == SValue::Null {
                        return false;
                    }
                    match actual.soql_cmp(value) {
                        Some(ord) => match op {
                            CmpOp::Lt => ord == Ordering::Less,
                            CmpOp::Le => ord != Ordering::Greater,
                            CmpOp::Gt => ord == Ordering::Greater,
                            _ => ord != Ordering::Less,
                        },
                        None => false,
                    }
                }
            }
        }
        Expr::In {
            field,
            negated,
            values,
        } => {
            let actual = get(field);
            values.iter().any(|v| actual.soql_eq(v)) != *negated
        }
        Expr::Like { field, pattern } => match get(field) {
            SValue::Str(s) => like(&s.to_lowercase(), &pattern.to_lowercase()),
            _ => false,
        },
    }
}

/// SQL LIKE with `%` (any run) and `_` (one character).
fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    // dp[j]: does t[..i] match p[..j]
    let mut dp = vec![false; p.len() + 1];
    dp[0] = true;
    for (j, pc) in p.iter().enumerate() {
        dp[j + 1] = dp[j] && *pc == '%';
    }
    for tc in &t {
        let mut next = vec![false; p.len() + 1];
        for (j, pc) in p.iter().enumerate() {
            next[j + 1] = match pc {
                '%' => next[j] || dp[j + 1],
                '_' => dp[j],
                c => dp[j] && c == tc,
            };
        }
        dp = next;
    }
    dp[p.len()]
}

/// Parses a stored or given date-time: Salesforce's `2024-01-01T00:00:00.000+0000` or RFC 3339.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::<FixedOffset>::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Formats a date-time the way Salesforce's REST API does.
pub fn format_datetime(d: DateTime<Utc>) -> String {
    d.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn bound(q: &str) -> Query {
        let mut query = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        query.bind().unwrap_or_else(|e| panic!("{q}: {e}"));
        query
    }

    /// Issue 8: about 3,000 nested parentheses overflowed the parser's stack and aborted the
    /// fake; nesting is now bounded and refused as MALFORMED_QUERY.
    #[test]
    fn deeply_nested_parentheses_are_refused_not_a_crash() {
        let nested = |n: usize| {
            format!(
                "SELECT Id FROM Case WHERE {}IsClosed = false{}",
                "(".repeat(n),
                ")".repeat(n)
            )
        };
        assert!(parse(&nested(MAX_NESTING)).is_ok());
        let e = parse(&nested(3000)).expect_err("refused");
        assert_eq!(e.code, ErrorCode::MalformedQuery);
        assert!(e.message.contains("nest"), "{}", e.message);
    }

    fn err(q: &str) -> SoqlError {
        match parse(q).and_then(|mut p| p.bind().map(|_| ())) {
            Ok(()) => panic!("{q} should fail"),
            Err(e) => e,
        }
    }

    fn rec(pairs: &[(&str, SValue)]) -> HashMap<String, SValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn matches(q: &str, r: &HashMap<String, SValue>) -> bool {
        bound(q).matches(&|f| r.get(f).cloned().unwrap_or(SValue::Null))
    }

    #[test]
    fn parses_full_subset_and_canonicalises_names() {
        let q = bound(
            "select id, status__c FROM object_routing_queue__c where (Status__c = 'New' or Status__c = 'Processing') and Attempts__c < 3 order by CreatedDate desc nulls first, Name limit 10",
        );
        assert_eq!(q.object, "Object_Routing_Queue__c");
        assert_eq!(q.fields, vec!["Id", "Status__c"]);
        assert_eq!(q.limit, Some(10));
        assert_eq!(q.order_by.len(), 2);
        assert!(q.order_by[0].descending && q.order_by[0].nulls_first);
        assert!(!q.order_by[1].descending && q.order_by[1].nulls_first);
        assert_eq!(q.where_fields(), vec!["Status__c", "Attempts__c"]);
    }

    #[test]
    fn comparison_operators() {
        let r = rec(&[
            ("Status__c", SValue::Str("New".into())),
            ("Attempts__c", SValue::Num(2.0)),
        ]);
        let base = "SELECT Id FROM Object_Routing_Queue__c WHERE ";
        for (cond, want) in [
            ("Status__c = 'new'", true),
            ("Status__c != 'New'", false),
            ("Status__c <> 'Old'", true),
            ("Attempts__c < 2", false),
            ("Attempts__c <= 2", true),
            ("Attempts__c > 1.5", true),
            ("Attempts__c >= 3", false),
            ("Attempts__c = -2", false),
            ("Status__c IN ('Processing', 'NEW')", true),
            ("Status__c NOT IN ('Processing', 'New')", false),
            ("Status__c = null", false),
            ("Error__c = null", true),
            ("Error__c != null", false),
            ("Error__c != 'x'", true),
            ("Error__c < 'x'", false),
            ("Status__c LIKE 'N%'", true),
            ("Status__c LIKE '_e_'", true),
            ("Status__c LIKE '_e'", false),
            ("Error__c LIKE '%'", false),
            (
                "(Status__c = 'x' OR Attempts__c = 2) AND Status__c = 'New'",
                true,
            ),
        ] {
            assert_eq!(matches(&format!("{base}{cond}"), &r), want, "{cond}");
        }
    }

    #[test]
    fn typed_literals_booleans_datetimes_and_escapes() {
        let when = parse_datetime("2024-01-01T10:00:00.000+0000");
        let r = rec(&[
            ("Incoming", SValue::Bool(true)),
            (
                "CreatedDate",
                when.map(SValue::DateTime).unwrap_or(SValue::Null),
            ),
            ("Subject", SValue::Str("It's broken".into())),
        ]);
        assert!(matches(
            "SELECT Id FROM EmailMessage WHERE Incoming = TRUE",
            &r
        ));
        assert!(!matches(
            "SELECT Id FROM EmailMessage WHERE Incoming = false",
            &r
        ));
        assert!(matches(
            "SELECT Id FROM EmailMessage WHERE CreatedDate > 2024-01-01T00:00:00Z AND CreatedDate < 2024-01-01T12:00:00+01:00",
            &r
        ));
        assert!(matches(
            "SELECT Id FROM EmailMessage WHERE Subject = 'it\\'s broken'",
            &r
        ));
    }

    #[test]
    fn errors_name_the_problem() {
        let e = err("SELECT Id, Bogus__c FROM Case");
        assert_eq!(e.code, ErrorCode::InvalidField);
        assert!(e.message.contains("'Bogus__c'"), "{}", e.message);
        let e = err("SELECT Id FROM Account");
        assert_eq!(e.code, ErrorCode::InvalidType);
        assert!(e.message.contains("'Account'"));
        let e = err("SELECT Id FROM Case WHERE Subject = 1");
        assert_eq!(e.code, ErrorCode::InvalidField);
        let e = err("SELECT Id FROM Object_Routing_Queue__c WHERE Attempts__c = '1'");
        assert!(e.message.contains("should not be enclosed in quotes"));
        let e = err("SELECT Id FROM EmailMessage WHERE TextBody = 'x'");
        assert!(e.message.contains("can not be filtered"));
        for (q, needle) in [
            ("SELECT COUNT() FROM Case", "aggregates"),
            ("SELECT Owner.Name FROM Case", "relationship"),
            ("SELECT Id FROM Case, User", "one object"),
            ("SELECT Id FROM Case WHERE NOT Subject = 'x'", "NOT"),
            (
                "SELECT Id FROM Case WHERE Subject = 'a' AND Subject = 'b' OR Subject = 'c'",
                "parentheses",
            ),
            ("SELECT Id FROM Case GROUP BY Subject", "GROUP"),
            (
                "SELECT Id FROM Case WHERE CreatedDate = TODAY",
                "date literals",
            ),
            (
                "SELECT Id FROM Case WHERE Id IN (SELECT ParentId FROM CaseComment)",
                "semi-joins",
            ),
            ("SELECT Id FROM Case WHERE Subject = 'open", "unterminated"),
            ("SELECT Id FROM Case LIMIT x", "LIMIT"),
            ("SELECT Id FROM Case OFFSET 5", "OFFSET"),
            (
                "SELECT Id FROM Case WHERE CreatedDate > 2024-01-01",
                "unexpected token",
            ),
            ("DELETE FROM Case", "SELECT"),
        ] {
            let e = err(q);
            assert_eq!(e.code, ErrorCode::MalformedQuery, "{q}");
            assert!(e.message.contains(needle), "{q}: {}", e.message);
        }
    }

    #[test]
    fn ordering_with_nulls() {
        let q = bound("SELECT Id FROM Case ORDER BY Subject ASC NULLS LAST, Priority DESC");
        let a = rec(&[("Subject", SValue::Str("b".into()))]);
        let b = rec(&[("Subject", SValue::Str("A".into()))]);
        let c = rec(&[]);
        let d = rec(&[
            ("Subject", SValue::Str("b".into())),
            ("Priority", SValue::Str("High".into())),
        ]);
        let mut v = vec![&a, &c, &b, &d];
        v.sort_by(|x, y| {
            q.compare(&|f| x.get(f).cloned().unwrap_or(SValue::Null), &|f| {
                y.get(f).cloned().unwrap_or(SValue::Null)
            })
        });
        // Priority DESC defaults to NULLS LAST: "High" before null.
        assert_eq!(v, vec![&b, &d, &a, &c]);
    }

    #[test]
    fn like_matcher() {
        assert!(like("abc", "a%"));
        assert!(like("abc", "%c"));
        assert!(like("abc", "a_c"));
        assert!(!like("abc", "a_"));
        assert!(like("", "%"));
        assert!(like("a%c", "a%c"));
    }

    #[test]
    fn short_ids_in_literals_become_18_chars() {
        let q = bound("SELECT Id FROM Case WHERE Id = '500000000000001'");
        match &q.filter {
            Some(Expr::Cmp {
                value: SValue::Str(s),
                ..
            }) => assert_eq!(s.len(), 18),
            other => panic!("{other:?}"),
        }
    }
}
