//! A strict JSON scanner over a request's bytes. Strings are borrowed from
//! the bytes unless they hold escapes (then unescaped into the arena), and
//! numbers are read from their text. It reads RFC 8259 JSON as serde_json
//! reads it and gives up ([`LeftToSerde`]) wherever it is not sure to read
//! alike (lone surrogates, `-0`, integers past 64 bits, very deep nesting),
//! so that serde_json decides those requests.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bumpalo::Bump;

use super::{LeftToSerde, Read};

/// Objects and arrays nested deeper than this are left to serde_json, which
/// counts nesting the same way and stops at 128.
const MAX_DEPTH: usize = 64;

/// The bytes that end a run of plain string bytes: a quote, a backslash, a
/// control character. One table look-up per byte instead of three compares.
static ENDS_RUN: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

#[derive(Clone, Copy)]
pub(super) struct Scanner<'a> {
    /// The whole input, checked to be UTF-8 once: every string is a slice
    /// of it between ASCII quotes and escapes, so on character boundaries.
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
    arena: &'a Bump,
}

/// Where a value was skipped over, to be read later.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mark {
    start: usize,
    end: usize,
}

impl<'a> Scanner<'a> {
    /// `None` when `bytes` are not UTF-8 (serde_json only checks the
    /// strings it reads, so it may still read them).
    pub(super) fn new(bytes: &'a [u8], arena: &'a Bump) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        Some(Self { text, bytes, pos: 0, depth: 0, arena })
    }

    /// Reads the value skipped at `mark` with `read`, which must end where
    /// the skip ended.
    pub(super) fn at<T>(&self, mark: Mark, read: impl FnOnce(&mut Self) -> Read<T>) -> Read<T> {
        let mut scanner = Self { pos: mark.start, ..*self };
        let value = read(&mut scanner)?;
        if scanner.pos != mark.end {
            return Err(LeftToSerde);
        }
        Ok(value)
    }

    /// A scanner over other bytes, sharing this one's arena.
    pub(super) fn over(&self, text: &'a str) -> Self {
        Self { text, bytes: text.as_bytes(), pos: 0, ..*self }
    }

    /// Nothing but whitespace is left.
    pub(super) fn end(&mut self) -> Read<()> {
        self.whitespace();
        if self.pos == self.bytes.len() { Ok(()) } else { Err(LeftToSerde) }
    }

    /// An object: `field` is called with each key and must read its value.
    pub(super) fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Read<()>) -> Read<()> {
        self.container(b'{', b'}', |s| {
            let key = s.string()?;
            s.expect(b':')?;
            field(s, key)
        })
    }

    /// An array: `item` is called for each element and must read it.
    pub(super) fn array(&mut self, item: impl FnMut(&mut Self) -> Read<()>) -> Read<()> {
        self.container(b'[', b']', item)
    }

    /// `open`, the members separated by commas, `close`.
    fn container(&mut self, open: u8, close: u8, mut member: impl FnMut(&mut Self) -> Read<()>) -> Read<()> {
        self.open(open)?;
        if self.peek() == Some(close) {
            self.pos += 1;
        } else {
            loop {
                member(self)?;
                match self.next() {
                    Some(b',') => {}
                    Some(b) if b == close => break,
                    _ => return Err(LeftToSerde),
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    fn open(&mut self, bracket: u8) -> Read<()> {
        self.expect(bracket)?;
        self.depth += 1;
        if self.depth > MAX_DEPTH { Err(LeftToSerde) } else { Ok(()) }
    }

    pub(super) fn string(&mut self) -> Read<&'a str> {
        self.expect(b'"')?;
        let start = self.pos;
        let run = self.plain_run();
        match self.byte() {
            Some(b'"') => Ok(&self.text[start..start + run]),
            Some(b'\\') => self.escaped(start, run),
            _ => Err(LeftToSerde), // a control character, or the end
        }
    }

    /// Bytes from here up to a quote, a backslash or a control character.
    fn plain_run(&mut self) -> usize {
        let rest = &self.bytes[self.pos..];
        let run = rest.iter().position(|&b| ENDS_RUN[usize::from(b)]).unwrap_or(rest.len());
        self.pos += run;
        run
    }

    /// The rest of a string whose first backslash was just read, unescaped
    /// into the arena.
    fn escaped(&mut self, start: usize, run: usize) -> Read<&'a str> {
        let mut text = String::from(&self.text[start..start + run]);
        loop {
            match self.byte().ok_or(LeftToSerde)? {
                b'"' => text.push('"'),
                b'\\' => text.push('\\'),
                b'/' => text.push('/'),
                b'b' => text.push('\u{8}'),
                b'f' => text.push('\u{c}'),
                b'n' => text.push('\n'),
                b'r' => text.push('\r'),
                b't' => text.push('\t'),
                b'u' => text.push(self.unicode_escape()?),
                _ => return Err(LeftToSerde),
            }
            let start = self.pos;
            let run = self.plain_run();
            text.push_str(&self.text[start..start + run]);
            match self.byte() {
                Some(b'"') => return Ok(self.arena.alloc_str(&text)),
                Some(b'\\') => {}
                _ => return Err(LeftToSerde),
            }
        }
    }

    /// `XXXX` after `\u`, and its low surrogate's `\uXXXX` after a high one.
    fn unicode_escape(&mut self) -> Read<char> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.byte() != Some(b'\\') || self.byte() != Some(b'u') {
                    return Err(LeftToSerde);
                }
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(LeftToSerde);
                }
                0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(LeftToSerde),
            code => code,
        };
        char::from_u32(code).ok_or(LeftToSerde)
    }

    fn hex4(&mut self) -> Read<u32> {
        let digits = self.bytes.get(self.pos..self.pos + 4).ok_or(LeftToSerde)?;
        self.pos += 4;
        digits.iter().try_fold(0, |code, &d| Ok(code << 4 | (d as char).to_digit(16).ok_or(LeftToSerde)?))
    }

    /// Bytes written as hex (trace and span ids), decoded as serde's OTLP
    /// mapping decodes them.
    pub(super) fn hex(&mut self) -> Read<&'a [u8]> {
        let text = self.string()?;
        if text.len() % 2 == 0 {
            let out = self.arena.alloc_slice_fill_copy(text.len() / 2, 0u8);
            if const_hex::decode_to_slice(text, out).is_ok() {
                return Ok(out);
            }
        }
        // A `0x` prefix, or not hex at all.
        const_hex::decode(text).map(|bytes| &*self.arena.alloc_slice_copy(&bytes)).map_err(|_| LeftToSerde)
    }

    /// Bytes written as standard base64 with padding (`bytesValue`).
    pub(super) fn base64(&mut self) -> Read<&'a [u8]> {
        let bytes = BASE64.decode(self.string()?).map_err(|_| LeftToSerde)?;
        Ok(self.arena.alloc_slice_copy(&bytes))
    }

    /// Consumes `null` if it is next: an absent message or value.
    pub(super) fn null(&mut self) -> bool {
        self.whitespace();
        let null = self.bytes[self.pos..].starts_with(b"null");
        self.pos += if null { 4 } else { 0 };
        null
    }

    pub(super) fn bool(&mut self) -> Read<bool> {
        self.whitespace();
        for (literal, value) in [(&b"true"[..], true), (b"false", false)] {
            if self.bytes[self.pos..].starts_with(literal) {
                self.pos += literal.len();
                return Ok(value);
            }
        }
        Err(LeftToSerde)
    }

    pub(super) fn u32(&mut self) -> Read<u32> {
        u32::try_from(self.u64()?).map_err(|_| LeftToSerde)
    }

    pub(super) fn i32(&mut self) -> Read<i32> {
        i32::try_from(self.i64()?).map_err(|_| LeftToSerde)
    }

    pub(super) fn u64(&mut self) -> Read<u64> {
        self.integer()?.parse().map_err(|_| LeftToSerde)
    }

    pub(super) fn i64(&mut self) -> Read<i64> {
        self.integer()?.parse().map_err(|_| LeftToSerde)
    }

    /// A `u64` as a number or as a string holding one (OTLP/JSON's times).
    pub(super) fn u64_or_string(&mut self) -> Read<u64> {
        if self.peek() == Some(b'"') { self.string()?.parse().map_err(|_| LeftToSerde) } else { self.u64() }
    }

    pub(super) fn i64_or_string(&mut self) -> Read<i64> {
        if self.peek() == Some(b'"') { self.string()?.parse().map_err(|_| LeftToSerde) } else { self.i64() }
    }

    /// Any number, read by serde_json's own parser: its float rounding may
    /// differ from the standard library's in the last bit, and it reads `-0`
    /// as a float.
    pub(super) fn f64(&mut self) -> Read<f64> {
        serde_json::from_str(self.number()?.0).map_err(|_| LeftToSerde)
    }

    /// An integer's text: no fraction or exponent, and not `-0`, which
    /// serde_json reads as a float.
    fn integer(&mut self) -> Read<&'a str> {
        match self.number()? {
            ("-0", _) | (_, false) => Err(LeftToSerde),
            (text, true) => Ok(text),
        }
    }

    /// A number's text as RFC 8259 writes it, and whether it is an integer.
    fn number(&mut self) -> Read<(&'a str, bool)> {
        self.whitespace();
        let start = self.pos;
        self.eat(b'-');
        match self.byte() {
            Some(b'0') => {}
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(LeftToSerde),
        }
        let mut integer = true;
        if self.eat(b'.') {
            integer = false;
            self.some_digits()?;
        }
        if self.eat(b'e') || self.eat(b'E') {
            integer = false;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            self.some_digits()?;
        }
        Ok((&self.text[start..self.pos], integer))
    }

    fn digits(&mut self) {
        while matches!(self.bytes.get(self.pos), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn some_digits(&mut self) -> Read<()> {
        let start = self.pos;
        self.digits();
        if self.pos > start { Ok(()) } else { Err(LeftToSerde) }
    }

    /// Skips any value, checking it is well-formed.
    pub(super) fn skip(&mut self) -> Read<()> {
        match self.peek().ok_or(LeftToSerde)? {
            b'{' => self.object(|s, _| s.skip()),
            b'[' => self.array(Self::skip),
            b'"' => self.string().map(drop),
            b't' | b'f' => self.bool().map(drop),
            b'n' if self.null() => Ok(()),
            _ => self.number().map(drop),
        }
    }

    /// Skips a value to be read later with [`Self::at`]. An object or array
    /// is only matched bracket for bracket here: reading it checks it.
    pub(super) fn mark(&mut self) -> Read<Mark> {
        self.whitespace();
        let start = self.pos;
        if !matches!(self.bytes.get(start), Some(b'{' | b'[')) {
            self.skip()?;
            return Ok(Mark { start, end: self.pos });
        }
        let (mut depth, mut in_string) = (0usize, false);
        while let Some(&b) = self.bytes.get(self.pos) {
            self.pos += 1;
            match (in_string, b) {
                (true, b'\\') => self.pos += 1,
                (true, b'"') | (false, b'"') => in_string = !in_string,
                (false, b'{' | b'[') => depth += 1,
                (false, b'}' | b']') => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(Mark { start, end: self.pos });
                    }
                }
                _ => {}
            }
        }
        Err(LeftToSerde)
    }

    fn whitespace(&mut self) {
        while matches!(self.bytes.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.whitespace();
        self.bytes.get(self.pos).copied()
    }

    /// The next byte after whitespace.
    fn next(&mut self) -> Option<u8> {
        self.whitespace();
        self.byte()
    }

    /// The next byte, whitespace or not (inside strings and numbers).
    fn byte(&mut self) -> Option<u8> {
        let byte = self.bytes.get(self.pos).copied()?;
        self.pos += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Read<()> {
        if self.next() == Some(byte) { Ok(()) } else { Err(LeftToSerde) }
    }

    /// Consumes `byte` if it is next, without skipping whitespace.
    fn eat(&mut self, byte: u8) -> bool {
        let next = self.bytes.get(self.pos) == Some(&byte);
        self.pos += usize::from(next);
        next
    }
}
