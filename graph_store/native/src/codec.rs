//! The byte layout of `graph_store/codec.py`, for what a commit writes and an open reads.
//! Integers are big-endian; see that module for the whole key space.

pub const NODE_CODE: [u8; 3] = [b'u', b'i', b's']; // USER, ITEM, SESSION
pub const EDGE_UI: u8 = 1;
pub const EDGE_IU: u8 = 2;
pub const EDGE_II: u8 = 3;
pub const EDGE_II_REV: u8 = 4;
pub const EDGE_UU: u8 = 5;
pub const EDGE_UU_REV: u8 = 6;

pub type Weight = (f64, i64);

#[inline]
pub fn weight_value(w: Weight) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&w.0.to_be_bytes());
    out[8..].copy_from_slice(&w.1.to_be_bytes());
    out
}

pub fn decode_weight(v: &[u8]) -> Result<Weight, String> {
    if v.len() != 16 {
        return Err(format!("a weight value has 16 bytes, found {}", v.len()));
    }
    let w = f64::from_be_bytes(v[..8].try_into().unwrap());
    let t = i64::from_be_bytes(v[8..].try_into().unwrap());
    Ok((w, t))
}

#[inline]
pub fn swap(key: u64) -> u64 {
    key.rotate_left(32)
}

#[inline]
pub fn edge_key(code: u8, key: u64) -> [u8; 10] {
    let mut out = [0u8; 10];
    out[0] = b'E';
    out[1] = code;
    out[2..].copy_from_slice(&key.to_be_bytes());
    out
}

pub fn decode_edge_key(k: &[u8]) -> Result<(u8, u64), String> {
    if k.len() != 10 || k[0] != b'E' {
        return Err(format!("not an edge key: {k:?}"));
    }
    Ok((k[1], u64::from_be_bytes(k[2..].try_into().unwrap())))
}

#[inline]
pub fn pop_key(item: u32) -> [u8; 5] {
    let mut out = [b'P', 0, 0, 0, 0];
    out[1..].copy_from_slice(&item.to_be_bytes());
    out
}

pub fn decode_pop_key(k: &[u8]) -> Result<u32, String> {
    if k.len() != 5 || k[0] != b'P' {
        return Err(format!("not a popularity key: {k:?}"));
    }
    Ok(u32::from_be_bytes(k[1..].try_into().unwrap()))
}

pub fn prefixed(head: u8, code: u8, id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + id.len());
    out.push(head);
    out.push(code);
    out.extend_from_slice(id.as_bytes());
    out
}

pub fn index_key(code: u8, index: u32) -> [u8; 6] {
    let mut out = [b'I', code, 0, 0, 0, 0];
    out[2..].copy_from_slice(&index.to_be_bytes());
    out
}

pub fn decode_index_key(k: &[u8]) -> Result<(u8, u32), String> {
    if k.len() != 6 || k[0] != b'I' {
        return Err(format!("not an index key: {k:?}"));
    }
    Ok((k[1], u32::from_be_bytes(k[2..].try_into().unwrap())))
}

/// `SESSION_HEAD (>qIH) + (n + 1) x u16 lengths in characters + UTF-8 of user and items`.
pub fn session_value(last_ts: i64, count: u32, user: &str, items: &[&str]) -> Vec<u8> {
    let text: usize = user.len() + items.iter().map(|s| s.len()).sum::<usize>();
    let mut out = Vec::with_capacity(14 + 2 * (items.len() + 1) + text);
    out.extend_from_slice(&last_ts.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&(items.len() as u16).to_be_bytes());
    for s in std::iter::once(&user).chain(items.iter()) {
        out.extend_from_slice(&(char_len(s) as u16).to_be_bytes());
    }
    out.extend_from_slice(user.as_bytes());
    for s in items {
        out.extend_from_slice(s.as_bytes());
    }
    out
}

#[inline]
fn char_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    }
}

/// `(last_ts, count, user, items)` of a session value.
pub fn decode_session(v: &[u8]) -> Result<(i64, u32, String, Vec<String>), String> {
    let bad = || "a session value does not decode".to_string();
    if v.len() < 14 {
        return Err(bad());
    }
    let last_ts = i64::from_be_bytes(v[..8].try_into().unwrap());
    let count = u32::from_be_bytes(v[8..12].try_into().unwrap());
    let n = u16::from_be_bytes(v[12..14].try_into().unwrap()) as usize + 1;
    let text_at = 14 + 2 * n;
    if v.len() < text_at {
        return Err(bad());
    }
    let text = std::str::from_utf8(&v[text_at..]).map_err(|_| bad())?;
    let mut chars = text.char_indices().map(|(i, _)| i).chain(std::iter::once(text.len()));
    let mut strings = Vec::with_capacity(n);
    let mut start = chars.next().unwrap_or(0);
    let mut taken = 0usize;
    for k in 0..n {
        let size = u16::from_be_bytes(v[14 + 2 * k..16 + 2 * k].try_into().unwrap()) as usize;
        let end = if size == 0 {
            start
        } else {
            chars.nth(size - 1).ok_or_else(bad)?
        };
        strings.push(text[start..end].to_string());
        start = end;
        taken += size;
    }
    if start != text.len() || taken != text.chars().count() {
        return Err(bad());
    }
    let user = strings.remove(0);
    Ok((last_ts, count, user, strings))
}
