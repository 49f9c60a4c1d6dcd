//! TraceQL's tokens, each with the byte offset it starts at.

use super::TraceQlError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Token {
    LBrace,
    RBrace,
    LParen,
    RParen,
    Comma,
    Pipe,
    /// `&&`, `||`, `!`, comparisons, arithmetic, structural operators.
    Op(&'static str),
    /// A name: an attribute (`span.http.route`, `.foo`, `resource."a b"`),
    /// an intrinsic (`duration`, `span:id`), a keyword or a function.
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    /// Nanoseconds.
    Duration(i64),
}

/// Operators, longest first so that `>>` wins over `>`.
const OPERATORS: [&str; 27] = [
    "!>>", "!<<", "&>>", "&<<", "&&", "||", "!=", "!~", "=~", ">=", "<=", ">>", "<<", "!>", "!<", "&>", "&<", "&~",
    "=", ">", "<", "~", "!", "+", "-", "*", "/",
];
const OTHER_OPERATORS: [&str; 2] = ["%", "^"];

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | ':' | '-' | '@' | '#' | '$')
}

fn unit_ns(unit: &str) -> Option<i64> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        _ => return None,
    })
}

pub(super) fn tokens(text: &str) -> Result<Vec<(usize, Token)>, TraceQlError> {
    let mut out = Vec::new();
    let mut rest = text.char_indices().peekable();
    while let Some(&(at, c)) = rest.peek() {
        if c.is_whitespace() {
            rest.next();
            continue;
        }
        let tail = &text[at..];
        let single = match c {
            '{' => Some(Token::LBrace),
            '}' => Some(Token::RBrace),
            '(' => Some(Token::LParen),
            ')' => Some(Token::RParen),
            ',' => Some(Token::Comma),
            _ => None,
        };
        if let Some(token) = single {
            out.push((at, token));
            rest.next();
            continue;
        }
        if c == '|' && !tail.starts_with("||") {
            out.push((at, Token::Pipe));
            rest.next();
            continue;
        }
        if c == '"' || c == '`' {
            let (value, len) = string(text, at)?;
            out.push((at, Token::Str(value)));
            advance(&mut rest, at + len);
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && tail[1..].starts_with(|d: char| d.is_ascii_digit())) {
            let (token, len) = number(text, at)?;
            out.push((at, token));
            advance(&mut rest, at + len);
            continue;
        }
        if c == '.' || (is_name_char(c) && c != '-') {
            let len = name_len(tail);
            out.push((at, Token::Ident(text[at..at + len].to_owned())));
            advance(&mut rest, at + len);
            // A quoted attribute name: `span."a b"`, `."a b"`.
            if text[..at + len].ends_with('.') && text[at + len..].starts_with('"') {
                let (value, quoted_len) = string(text, at + len)?;
                if let Some((_, Token::Ident(name))) = out.last_mut() {
                    name.push_str(&value);
                }
                advance(&mut rest, at + len + quoted_len);
            }
            continue;
        }
        let op = OPERATORS.iter().chain(OTHER_OPERATORS.iter()).find(|op| tail.starts_with(**op));
        match op {
            Some(op) => {
                out.push((at, Token::Op(op)));
                advance(&mut rest, at + op.len());
            }
            None => return Err(TraceQlError::at(text, at, format!("unexpected character {c:?}"))),
        }
    }
    Ok(out)
}

fn advance(rest: &mut std::iter::Peekable<std::str::CharIndices<'_>>, to: usize) {
    while rest.peek().is_some_and(|(at, _)| *at < to) {
        rest.next();
    }
}

/// The length of a name starting at the start of `tail`. A name may hold
/// dots and colons (`span.http.route`, `span:id`) but stops before an
/// operator, so `duration>1s` is three tokens.
fn name_len(tail: &str) -> usize {
    let mut len = 0;
    for (i, c) in tail.char_indices() {
        if !is_name_char(c) {
            break;
        }
        // `-` starts an operator unless it sits inside a name (`my-attr`).
        if c == '-' && !tail[i + 1..].starts_with(|n: char| n.is_alphanumeric()) {
            break;
        }
        len = i + c.len_utf8();
    }
    len.max(1)
}

/// A quoted string at `at`: its value and its length in the text.
fn string(text: &str, at: usize) -> Result<(String, usize), TraceQlError> {
    let quote = text[at..].chars().next().expect("a quote");
    let mut value = String::new();
    let mut chars = text[at + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            return Ok((value, i + 2));
        }
        if c == '\\' && quote == '"' {
            let escaped = match chars.next() {
                Some((_, 'n')) => '\n',
                Some((_, 't')) => '\t',
                Some((_, 'r')) => '\r',
                Some((_, c @ ('"' | '\\'))) => c,
                Some((j, other)) => {
                    return Err(TraceQlError::at(text, at + j, format!("unknown escape \\{other}")));
                }
                None => break,
            };
            value.push(escaped);
        } else {
            value.push(c);
        }
    }
    Err(TraceQlError::at(text, at, "unterminated string"))
}

/// A number or a duration at `at`.
fn number(text: &str, at: usize) -> Result<(Token, usize), TraceQlError> {
    let tail = &text[at..];
    let digits = tail.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(tail.len());
    let unit_len = tail[digits..].find(|c: char| !c.is_alphabetic()).unwrap_or(tail.len() - digits);
    let (number, unit) = (&tail[..digits], &tail[digits..digits + unit_len]);
    let bad = || TraceQlError::at(text, at, format!("{:?} is not a number or a duration", &tail[..digits + unit_len]));
    if unit.is_empty() {
        return Ok((
            if number.contains('.') {
                Token::Float(number.parse().map_err(|_| bad())?)
            } else {
                Token::Int(number.parse().map_err(|_| bad())?)
            },
            digits,
        ));
    }
    // Durations may chain units: 1h30m.
    let mut total = 0f64;
    let mut rest = tail;
    let mut len = 0;
    loop {
        let d = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let u = rest[d..].find(|c: char| !c.is_alphabetic()).unwrap_or(rest.len() - d);
        if d == 0 || u == 0 {
            break;
        }
        let value: f64 = rest[..d].parse().map_err(|_| bad())?;
        let ns = unit_ns(&rest[d..d + u]).ok_or_else(bad)?;
        total += value * ns as f64;
        len += d + u;
        rest = &rest[d + u..];
    }
    if !total.is_finite() || total > i64::MAX as f64 {
        return Err(bad());
    }
    Ok((Token::Duration(total as i64), len))
}
