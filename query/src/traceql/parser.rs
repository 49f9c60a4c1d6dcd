//! A recursive-descent parser from tokens to [`Query`].

use super::TraceQlError;
use super::ast::{BinaryOp, Expr, Intrinsic, Literal, Query, Scope, Spanset, SpansetOp, Stage, Status};
use super::lexer::Token;
use crate::params::SpanKind;

const AGGREGATES: [&str; 5] = ["count", "avg", "min", "max", "sum"];
const METRICS: [&str; 8] = [
    "rate",
    "count_over_time",
    "min_over_time",
    "max_over_time",
    "avg_over_time",
    "sum_over_time",
    "quantile_over_time",
    "histogram_over_time",
];
const SECOND_STAGE: [&str; 2] = ["topk", "bottomk"];
/// Values `compare()` keeps per attribute when not told, as Tempo.
const COMPARE_TOP: usize = 10;

pub(super) struct Parser<'a> {
    text: &'a str,
    tokens: Vec<(usize, Token)>,
    next: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(text: &'a str, tokens: Vec<(usize, Token)>) -> Self {
        Self { text, tokens, next: 0 }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next).map(|(_, t)| t)
    }

    /// Where the next token starts (the end of the text after the last).
    fn here(&self) -> usize {
        self.tokens.get(self.next).map(|(at, _)| *at).unwrap_or(self.text.len())
    }

    fn error(&self, message: impl Into<String>) -> TraceQlError {
        TraceQlError::at(self.text, self.here(), message)
    }

    fn unexpected(&self, wanted: &str) -> TraceQlError {
        match self.peek() {
            Some(token) => self.error(format!("unexpected {}, expecting {wanted}", describe(token))),
            None => self.error(format!("unexpected end of query, expecting {wanted}")),
        }
    }

    fn eat(&mut self, token: &Token) -> bool {
        if self.peek() == Some(token) {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &Token, wanted: &str) -> Result<(), TraceQlError> {
        if self.eat(token) { Ok(()) } else { Err(self.unexpected(wanted)) }
    }

    fn eat_op(&mut self, ops: &[&str]) -> Option<&'static str> {
        match self.peek() {
            Some(Token::Op(op)) if ops.contains(op) => {
                let op = *op;
                self.next += 1;
                Some(op)
            }
            _ => None,
        }
    }

    pub(super) fn query(mut self) -> Result<Query, TraceQlError> {
        if self.tokens.is_empty() {
            return Err(self.error("empty query: a TraceQL query starts with a spanset filter such as { }"));
        }
        let spanset = self.spansets(0)?;
        let mut stages = Vec::new();
        while self.eat(&Token::Pipe) {
            stages.push(self.stage()?);
        }
        if self.peek().is_some() {
            return Err(self.unexpected("|, &&, || or a structural operator"));
        }
        Ok(Query { spanset, stages })
    }

    /// Spansets joined, left to right, by the operators of one precedence
    /// level (`||`, then `&&`, then the structural ones, tightest).
    fn spansets(&mut self, level: usize) -> Result<Spanset, TraceQlError> {
        const LEVELS: [&[&str]; 3] = [
            &["||"],
            &["&&"],
            &[">>", ">", "<<", "<", "~", "!>>", "!>", "!<<", "!<", "!~", "&>>", "&>", "&<<", "&<", "&~"],
        ];
        let next = |p: &mut Self| if level + 1 < LEVELS.len() { p.spansets(level + 1) } else { p.spanset_primary() };
        let mut left = next(self)?;
        loop {
            let at = self.here();
            let Some(op) = self.eat_op(LEVELS[level]) else { return Ok(left) };
            let op = SpansetOp::parse(op).expect("a spanset operator");
            left = Spanset::Op(op, Box::new(left), Box::new(next(self)?), at);
        }
    }

    fn spanset_primary(&mut self) -> Result<Spanset, TraceQlError> {
        let at = self.here();
        if self.eat(&Token::LParen) {
            let inner = self.spansets(0)?;
            self.expect(&Token::RParen, ")")?;
            return Ok(inner);
        }
        if !self.eat(&Token::LBrace) {
            return Err(self.unexpected("{ (a spanset filter)"));
        }
        if self.eat(&Token::RBrace) {
            return Ok(Spanset::Filter(None, at));
        }
        let expr = self.expr()?;
        self.expect(&Token::RBrace, "}")?;
        Ok(Spanset::Filter(Some(expr), at))
    }

    fn stage(&mut self) -> Result<Stage, TraceQlError> {
        let at = self.here();
        if matches!(self.peek(), Some(Token::LBrace | Token::LParen)) {
            return Ok(Stage::Filter(self.spansets(0)?));
        }
        let Some(Token::Ident(name)) = self.peek().cloned() else {
            return Err(self.unexpected("a function (count, avg, by, select, rate, ...) or a spanset filter"));
        };
        self.next += 1;
        if name == "compare" {
            return self.compare(at);
        }
        let arguments = self.arguments()?;
        let name = name.as_str();
        if AGGREGATES.contains(&name) {
            if arguments.len() > 1 || (name == "count") != arguments.is_empty() {
                let wanted = if name == "count" { "no argument" } else { "one argument" };
                return Err(TraceQlError::at(self.text, at, format!("{name}() takes {wanted}")));
            }
            let op_at = self.here();
            let Some(op) = self.eat_op(&["=", "!=", ">", ">=", "<", "<="]) else {
                return Err(self.unexpected("a comparison after the aggregate"));
            };
            let value = match self.unary()? {
                Expr::Literal(value, _) => value,
                _ => return Err(TraceQlError::at(self.text, op_at, "an aggregate is compared with a literal")),
            };
            return Ok(Stage::Aggregate {
                function: name.to_owned(),
                argument: arguments.into_iter().next(),
                op: binary(op),
                value,
                at,
            });
        }
        match name {
            "by" => Ok(Stage::By(arguments, at)),
            "select" => Ok(Stage::Select(arguments, at)),
            "coalesce" => Ok(Stage::Coalesce(at)),
            _ if METRICS.contains(&name) => {
                let mut by = Vec::new();
                if matches!(self.peek(), Some(Token::Ident(b)) if b == "by") {
                    self.next += 1;
                    by = self.arguments()?;
                }
                Ok(Stage::Metrics { function: name.to_owned(), arguments, by, at })
            }
            _ if SECOND_STAGE.contains(&name) => Ok(Stage::Followup { function: name.to_owned(), arguments, at }),
            _ => Err(TraceQlError::at(self.text, at, format!("unknown function {name}"))),
        }
    }

    /// `compare({ selection } [, top [, start, end]])`, after its name.
    fn compare(&mut self, at: usize) -> Result<Stage, TraceQlError> {
        self.expect(&Token::LParen, "(")?;
        let selection = self.spansets(0)?;
        let mut numbers = Vec::new();
        while self.eat(&Token::Comma) {
            let number_at = self.here();
            match self.unary()? {
                Expr::Literal(Literal::Int(n), _) if n >= 0 => numbers.push((n, number_at)),
                _ => {
                    return Err(TraceQlError::at(
                        self.text,
                        number_at,
                        "compare() takes whole numbers after the spanset",
                    ));
                }
            }
        }
        self.expect(&Token::RParen, ", or )")?;
        let top = match numbers.first() {
            None => COMPARE_TOP,
            Some(&(0, at)) => return Err(TraceQlError::at(self.text, at, "compare() keeps at least one value")),
            Some(&(n, _)) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let between = match numbers[..] {
            [] | [_] | [_, (0, _), (0, _)] => None,
            [_, (start, _), (end, end_at)] if end <= start => {
                return Err(TraceQlError::at(self.text, end_at, "compare()'s end comes after its start"));
            }
            [_, (start, _), (end, _)] => Some((start, end)),
            [_, (_, wrong), ..] => {
                return Err(TraceQlError::at(
                    self.text,
                    wrong,
                    "compare() takes a start and an end (unix ns), or neither",
                ));
            }
        };
        Ok(Stage::Compare { selection, top, between, at })
    }

    /// `( expr, expr, ... )`, possibly empty.
    fn arguments(&mut self) -> Result<Vec<Expr>, TraceQlError> {
        self.expect(&Token::LParen, "(")?;
        let mut arguments = Vec::new();
        if self.eat(&Token::RParen) {
            return Ok(arguments);
        }
        loop {
            arguments.push(self.expr()?);
            if self.eat(&Token::RParen) {
                return Ok(arguments);
            }
            self.expect(&Token::Comma, ", or )")?;
        }
    }

    pub(super) fn expr(&mut self) -> Result<Expr, TraceQlError> {
        self.fields(0)
    }

    /// Field expressions joined by the operators of one precedence level:
    /// `||`, `&&`, a comparison (at most one), `+ -`, `* / %`; then `^`.
    fn fields(&mut self, level: usize) -> Result<Expr, TraceQlError> {
        const LEVELS: [&[&str]; 5] =
            [&["||"], &["&&"], &["=", "!=", ">", ">=", "<", "<=", "=~", "!~"], &["+", "-"], &["*", "/", "%"]];
        let next = |p: &mut Self| if level + 1 < LEVELS.len() { p.fields(level + 1) } else { p.power() };
        let mut left = next(self)?;
        loop {
            let at = self.here();
            let Some(op) = self.eat_op(LEVELS[level]) else { return Ok(left) };
            left = Expr::Binary(binary(op), Box::new(left), Box::new(next(self)?), at);
            // `a = b = c` means nothing.
            if level == 2 {
                return Ok(left);
            }
        }
    }

    fn power(&mut self) -> Result<Expr, TraceQlError> {
        let left = self.unary()?;
        let at = self.here();
        match self.eat_op(&["^"]) {
            Some(_) => Ok(Expr::Binary(BinaryOp::Pow, Box::new(left), Box::new(self.power()?), at)),
            None => Ok(left),
        }
    }

    fn unary(&mut self) -> Result<Expr, TraceQlError> {
        let at = self.here();
        if self.eat_op(&["!"]).is_some() {
            return Ok(Expr::Not(Box::new(self.unary()?), at));
        }
        if self.eat_op(&["-"]).is_some() {
            return Ok(match self.unary()? {
                Expr::Literal(Literal::Int(n), _) => Expr::Literal(Literal::Int(-n), at),
                Expr::Literal(Literal::Float(f), _) => Expr::Literal(Literal::Float(-f), at),
                Expr::Literal(Literal::Duration(d), _) => Expr::Literal(Literal::Duration(-d), at),
                other => Expr::Neg(Box::new(other), at),
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, TraceQlError> {
        let at = self.here();
        let Some(token) = self.peek().cloned() else { return Err(self.unexpected("a value or an attribute")) };
        self.next += 1;
        let literal = |l| Ok(Expr::Literal(l, at));
        match token {
            Token::LParen => {
                let inner = self.expr()?;
                self.expect(&Token::RParen, ")")?;
                Ok(inner)
            }
            Token::Str(s) => literal(Literal::Str(s)),
            Token::Int(n) => literal(Literal::Int(n)),
            Token::Float(f) => literal(Literal::Float(f)),
            Token::Duration(ns) => literal(Literal::Duration(ns)),
            Token::Ident(name) => self.name(name, at),
            other => {
                self.next -= 1;
                Err(self.error(format!("unexpected {}, expecting a value or an attribute", describe(&other))))
            }
        }
    }

    fn name(&self, name: String, at: usize) -> Result<Expr, TraceQlError> {
        let literal = |l| Ok(Expr::Literal(l, at));
        match name.as_str() {
            "true" => return literal(Literal::Bool(true)),
            "false" => return literal(Literal::Bool(false)),
            "nil" => return literal(Literal::Nil),
            "error" => return literal(Literal::Status(Status::Error)),
            "ok" => return literal(Literal::Status(Status::Ok)),
            "unset" => return literal(Literal::Status(Status::Unset)),
            "server" | "client" | "producer" | "consumer" | "internal" | "unspecified" => {
                return literal(Literal::Kind(name.parse::<SpanKind>().expect("a span kind")));
            }
            _ => {}
        }
        if let Some(intrinsic) = Intrinsic::parse(&name) {
            return Ok(Expr::Intrinsic(intrinsic, at));
        }
        let scoped = [
            ("span.", Scope::Span),
            ("resource.", Scope::Resource),
            ("event.", Scope::Event),
            ("link.", Scope::Link),
            ("instrumentation.", Scope::Instrumentation),
            (".", Scope::Unscoped),
        ];
        for (prefix, scope) in scoped {
            if let Some(key) = name.strip_prefix(prefix) {
                if key.is_empty() {
                    return Err(TraceQlError::at(self.text, at, format!("{name}: an attribute needs a name")));
                }
                return Ok(Expr::Attribute { scope, name: key.to_owned(), at });
            }
        }
        Err(TraceQlError::at(
            self.text,
            at,
            format!(
                "unknown name {name:?}: attributes take a scope (span., resource., event., link., instrumentation.) or a leading dot"
            ),
        ))
    }
}

fn binary(op: &str) -> BinaryOp {
    match op {
        "&&" => BinaryOp::And,
        "||" => BinaryOp::Or,
        "=" => BinaryOp::Eq,
        "!=" => BinaryOp::NotEq,
        "<" => BinaryOp::Lt,
        "<=" => BinaryOp::LtEq,
        ">" => BinaryOp::Gt,
        ">=" => BinaryOp::GtEq,
        "=~" => BinaryOp::Regex,
        "!~" => BinaryOp::NotRegex,
        "+" => BinaryOp::Add,
        "-" => BinaryOp::Sub,
        "*" => BinaryOp::Mul,
        "/" => BinaryOp::Div,
        "%" => BinaryOp::Mod,
        _ => BinaryOp::Pow,
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::LBrace => "{".into(),
        Token::RBrace => "}".into(),
        Token::LParen => "(".into(),
        Token::RParen => ")".into(),
        Token::Comma => ",".into(),
        Token::Pipe => "|".into(),
        Token::Op(op) => (*op).into(),
        Token::Ident(name) => name.clone(),
        Token::Str(s) => format!("{s:?}"),
        Token::Int(n) => n.to_string(),
        Token::Float(f) => f.to_string(),
        Token::Duration(ns) => format!("{ns}ns"),
    }
}
