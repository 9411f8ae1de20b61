//! The v1 interaction wire form, decoded without Python objects, for the records that
//! `stream.events.decode_interaction` certainly accepts.
//!
//! Anything this parser is not sure about returns `None` and the caller hands the record to
//! the reference decoder, which decides (and names the reason of a reject). So this only
//! needs to be *sound*: every record it accepts must be one the reference accepts, with the
//! same field values. It therefore accepts a strict subset: pure ASCII without any backslash
//! (no escapes), one flat object whose keys are known fields without repeats, ids of
//! printable ASCII, `ts` and `v` as plain JSON integers, `weight` absent, `null` or a JSON
//! number written with a fraction or exponent (the reference keeps ints as another case).

use crate::plan::{Ev, Staged};

pub struct Limits {
    pub max_id_len: usize,
    pub max_bytes: usize,
    pub max_ts: i64,
    pub version: i64,
}

pub struct Parsed<'a> {
    pub user: &'a str,
    pub item: &'a str,
    pub session: &'a str,
    pub ts: i64,
    pub kind: &'a [u8],
    pub weight: Option<f64>,
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        self.i += 1;
        Some(c)
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// A string body between quotes (the input holds no backslash, so no escapes).
    #[inline]
    fn string(&mut self) -> Option<&'a [u8]> {
        if self.next()? != b'"' {
            return None;
        }
        let start = self.i;
        while self.i < self.b.len() {
            let c = self.b[self.i];
            if c == b'"' {
                let s = &self.b[start..self.i];
                self.i += 1;
                return Some(s);
            }
            if c < 0x20 {
                return None; // a raw control character: not JSON
            }
            self.i += 1;
        }
        None
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
            self.i += 1;
        }
        self.i - start
    }

    /// A JSON number; returns its text and whether it has a fraction or an exponent.
    fn number(&mut self) -> Option<(&'a str, bool)> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
            float = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
            float = true;
        }
        if self.peek().is_some_and(|c| c.is_ascii_digit()) {
            return None; // a leading zero followed by digits
        }
        // ASCII only, so the slice is valid UTF-8.
        Some((std::str::from_utf8(&self.b[start..self.i]).ok()?, float))
    }

    fn int(&mut self) -> Option<i64> {
        let (text, float) = self.number()?;
        if float {
            return None;
        }
        text.parse::<i64>().ok()
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }
}

fn id<'a>(s: &'a [u8], lim: &Limits) -> Option<&'a str> {
    if s.is_empty() || s.len() > lim.max_id_len || !s.iter().all(|&c| (0x20..=0x7e).contains(&c)) {
        return None;
    }
    std::str::from_utf8(s).ok()
}

const USER: u8 = 1;
const ITEM: u8 = 2;
const SESSION: u8 = 4;
const TS: u8 = 8;
const KIND: u8 = 16;
const WEIGHT: u8 = 32;
const VERSION: u8 = 64;

/// The interaction in `raw`, or `None` where the reference decoder must decide.
pub fn parse_interaction<'a>(raw: &'a [u8], lim: &Limits) -> Option<Parsed<'a>> {
    if raw.len() > lim.max_bytes || !raw.is_ascii() || raw.contains(&b'\\') {
        return None;
    }
    let mut c = Cursor { b: raw, i: 0 };
    let (mut user, mut item, mut session, mut kind): (&[u8], &[u8], &[u8], &[u8]) = (b"", b"", b"", b"");
    let (mut ts, mut version, mut weight) = (0i64, lim.version, None);
    let mut seen = 0u8;
    c.ws();
    if c.next()? != b'{' {
        return None;
    }
    loop {
        c.ws();
        let key = c.string()?;
        c.ws();
        if c.next()? != b':' {
            return None;
        }
        c.ws();
        let bit = match key {
            b"user_id" => {
                user = c.string()?;
                USER
            }
            b"item_id" => {
                item = c.string()?;
                ITEM
            }
            b"session_id" => {
                session = c.string()?;
                SESSION
            }
            b"kind" => {
                kind = c.string()?;
                KIND
            }
            b"ts" => {
                ts = c.int()?;
                TS
            }
            b"v" => {
                version = c.int()?;
                VERSION
            }
            b"weight" => {
                if !c.literal(b"null") {
                    let (text, float) = c.number()?;
                    if !float {
                        return None;
                    }
                    weight = Some(text.parse::<f64>().ok()?);
                }
                WEIGHT
            }
            _ => return None,
        };
        if seen & bit != 0 {
            return None; // a repeated key: the reference keeps the last one; let it decide
        }
        seen |= bit;
        c.ws();
        match c.next()? {
            b',' => continue,
            b'}' => break,
            _ => return None,
        }
    }
    c.ws();
    if c.i != raw.len() || seen & (USER | ITEM | SESSION | TS | KIND) != (USER | ITEM | SESSION | TS | KIND) {
        return None;
    }
    if version != lim.version || ts < 0 || ts > lim.max_ts {
        return None;
    }
    if let Some(w) = weight {
        if !(w.is_finite() && w >= 0.0) {
            return None;
        }
    }
    Some(Parsed {
        user: id(user, lim)?,
        item: id(item, lim)?,
        session: id(session, lim)?,
        ts,
        kind,
        weight,
    })
}

/// Stages one raw interaction payload if the wire decoder is sure of it; otherwise leaves an
/// empty slot for the reference decoder and returns false.
pub fn stage_payload(limits: &Limits, kinds: &[(Vec<u8>, f64)], staged: &mut Staged, raw: Option<&[u8]>) -> bool {
    let ev = raw.and_then(|b| parse_interaction(b, limits)).and_then(|p| {
        let kind_weight = kinds.iter().find(|(k, _)| k.as_slice() == p.kind)?.1;
        let inc = p.weight.unwrap_or(kind_weight);
        Some(Ev::Inter {
            u: staged.span(p.user),
            i: staged.span(p.item),
            s: staged.span(p.session),
            ts: p.ts,
            inc,
        })
    });
    let ok = ev.is_some();
    staged.evs.push(ev.unwrap_or(Ev::Hole));
    ok
}
