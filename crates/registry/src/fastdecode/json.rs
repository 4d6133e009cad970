//! The JSON text reader under the record shapes: tokens, strings (escapes included),
//! numbers as serde_json reads them, arrays, objects and known keys matched by word.
//! Every reader answers `None` for what it does not take exactly.

use std::borrow::Cow;

use super::MAX_UNKNOWN_DEPTH;
use crate::record::SmolStr;

/// A JSON number as written.
struct Num<'a> {
    text: &'a str,
}

pub(super) struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    /// Skips JSON whitespace; the next byte, if any.
    #[inline]
    fn peek(&mut self) -> Option<u8> {
        while let Some(&b) = self.bytes.get(self.pos) {
            if matches!(b, b' ' | b'\n' | b'\t' | b'\r') {
                self.pos += 1;
            } else {
                return Some(b);
            }
        }
        None
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        if self.peek()? == c {
            self.pos += 1;
            Some(())
        } else {
            None
        }
    }

    /// Nothing but whitespace left.
    pub(super) fn end(&mut self) -> Option<()> {
        match self.peek() {
            None => Some(()),
            Some(_) => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.bytes.get(self.pos..self.pos + word.len())? == word {
            self.pos += word.len();
            Some(())
        } else {
            None
        }
    }

    /// `null` (consumed: `Some(true)`), or something else (nothing consumed).
    #[inline]
    fn null(&mut self) -> Option<bool> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            Some(true)
        } else {
            Some(false)
        }
    }

    pub(super) fn bool(&mut self) -> Option<bool> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|()| true),
            b'f' => self.literal(b"false").map(|()| false),
            _ => None,
        }
    }

    /// Moves to the next `"`, `\\` or control character (or the end), eight bytes at a
    /// time (the classic "has a zero / has a byte less than" word tricks, as serde_json
    /// does: a flagged byte above the first may be a false alarm, the lowest is exact).
    #[inline]
    fn skip_plain(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        while let Some(chunk) = self.bytes.get(self.pos..self.pos + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let x = u64::from_le_bytes(word);
            let quote = x ^ (ONES * u64::from(b'"'));
            let backslash = x ^ (ONES * u64::from(b'\\'));
            let found = (x.wrapping_sub(ONES * 0x20)
                | quote.wrapping_sub(ONES)
                | backslash.wrapping_sub(ONES))
                & !x
                & HIGH;
            // `!x & HIGH` keeps bytes below 0x80; for the quote and backslash tests the
            // byte's own high bit is clear exactly when x's is (both are ASCII).
            if found != 0 {
                self.pos += (found.trailing_zeros() / 8) as usize;
                return;
            }
            self.pos += 8;
        }
        while let Some(&b) = self.bytes.get(self.pos) {
            if b == b'"' || b == b'\\' || b < 0x20 {
                return;
            }
            self.pos += 1;
        }
    }

    /// A string, borrowed when it has no escapes.
    pub(super) fn str(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.pos;
        self.skip_plain();
        match *self.bytes.get(self.pos)? {
            b'"' => {
                let s = self.text.get(start..self.pos)?;
                self.pos += 1;
                return Some(Cow::Borrowed(s));
            }
            b'\\' => {}
            _ => return None,
        }
        let mut out = String::with_capacity(self.pos - start + 16);
        out.push_str(self.text.get(start..self.pos)?);
        loop {
            let run = self.pos;
            self.skip_plain();
            if *self.bytes.get(self.pos)? < 0x20 {
                return None;
            }
            out.push_str(self.text.get(run..self.pos)?);
            if self.bytes[self.pos] == b'"' {
                self.pos += 1;
                return Some(Cow::Owned(out));
            }
            self.pos += 1;
            let e = *self.bytes.get(self.pos)?;
            self.pos += 1;
            let c = match e {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let hi = self.hex4()?;
                    match hi {
                        0xD800..=0xDBFF => {
                            self.literal(b"\\u")?;
                            let lo = self.hex4()?;
                            if !(0xDC00..=0xDFFF).contains(&lo) {
                                return None;
                            }
                            let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                            char::from_u32(c)?
                        }
                        0xDC00..=0xDFFF => return None,
                        _ => char::from_u32(hi)?,
                    }
                }
                _ => return None,
            };
            out.push(c);
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.bytes.get(self.pos..self.pos + 4)?;
        let mut v = 0;
        for &d in digits {
            v = v * 16 + char::from(d).to_digit(16)?;
        }
        self.pos += 4;
        Some(v)
    }

    pub(super) fn smol(&mut self) -> Option<SmolStr> {
        self.str().map(|s| SmolStr::new(&*s))
    }

    /// A number, checked against the JSON grammar.
    fn num(&mut self) -> Option<Num<'a>> {
        self.peek()?;
        let b = self.bytes;
        let start = self.pos;
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match *b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return None,
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            let digits = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == digits {
                return None;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let digits = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == digits {
                return None;
            }
        }
        // A digit right after the number (`01`) is a syntax error: serde reports it.
        if b.get(i).is_some_and(u8::is_ascii_digit) || i - start > 64 {
            return None;
        }
        self.pos = i;
        Some(Num {
            text: self.text.get(start..i)?,
        })
    }

    /// The digits of an integer from `self.pos` (at least one, no leading zero, not
    /// followed by a fraction or exponent: serde reads those as floats, which integer
    /// fields refuse), accumulated; `None` past `u64::MAX` (serde: a float again).
    #[inline]
    fn digits(&mut self) -> Option<u64> {
        let b = self.bytes;
        let mut i = self.pos;
        let first = b.get(i)?.wrapping_sub(b'0');
        if first > 9 {
            return None;
        }
        let mut v = u64::from(first);
        i += 1;
        if first != 0 {
            while let Some(d) = b.get(i).map(|d| d.wrapping_sub(b'0')).filter(|d| *d <= 9) {
                v = v.checked_mul(10)?.checked_add(u64::from(d))?;
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'0'..=b'9' | b'.' | b'e' | b'E')) {
            return None;
        }
        self.pos = i;
        Some(v)
    }

    /// A non-negative integer (serde refuses a fraction, an exponent, `-0` and a
    /// negative number for an unsigned field; one beyond `u64` it reads as a float).
    #[inline]
    pub(super) fn u64(&mut self) -> Option<u64> {
        self.peek()?;
        self.digits()
    }

    #[inline]
    pub(super) fn u32(&mut self) -> Option<u32> {
        self.u64().and_then(|v| u32::try_from(v).ok())
    }

    pub(super) fn i32(&mut self) -> Option<i32> {
        if self.peek()? == b'-' {
            self.pos += 1;
            // serde_json reads `-0` as the float -0.0, which an integer field refuses.
            let v = self.digits().filter(|v| *v != 0)?;
            i32::try_from(-i64::try_from(v).ok()?).ok()
        } else {
            i32::try_from(self.digits()?).ok()
        }
    }

    /// A float, correctly rounded (`str::parse`, as serde_json's `float_roundtrip`);
    /// an integer converts exactly as serde's `u64`/`i64 as f64` does (nearest, ties
    /// to even). Out of range (serde: "number out of range") goes to serde.
    pub(super) fn f64(&mut self) -> Option<f64> {
        let n = self.num()?;
        let v: f64 = n.text.parse().ok()?;
        v.is_finite().then_some(v)
    }

    /// `null` as `None`, else `f`.
    #[inline]
    pub(super) fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.null()? {
            Some(None)
        } else {
            f(self).map(Some)
        }
    }

    pub(super) fn array<T>(&mut self, mut f: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.pos += 1;
            return Some(Vec::new());
        }
        // The capacity `Vec`'s first growth gives (what serde's visitor ends with for
        // up to four entries), allocated directly rather than through `grow_one`.
        let mut v = Vec::with_capacity(4);
        loop {
            v.push(f(self)?);
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(v);
                }
                _ => return None,
            }
        }
    }

    /// An object: `f` is called with each key, positioned at its value, and must
    /// consume the value.
    fn object(&mut self, mut f: impl FnMut(&mut Self, Cow<'a, str>) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(());
        }
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let key = self.str()?;
            self.eat(b':')?;
            f(self, key)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An object whose known keys are `keys`, in the order our writers emit them: `f`
    /// gets, for each entry, `Ok(index in keys)` or `Err(key)` for another key, and must
    /// consume the value.
    ///
    /// A key is first matched in place (`"` + a known key + `"`: exact, as no known key
    /// has a quote, backslash or control character), as three masked 8-byte words,
    /// starting with the one after the last matched, so a record in writer order costs
    /// one comparison per key; anything else (an escaped spelling, an unknown key) is
    /// read as a string and looked up.
    pub(super) fn keyed_object(
        &mut self,
        keys: &[Key],
        mut f: impl FnMut(&mut Self, Result<usize, Cow<'a, str>>) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.pos += 1;
            return Some(());
        }
        let mut hint = 0;
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let key = self.key(keys, &mut hint)?;
            self.eat(b':')?;
            f(self, key)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    #[inline]
    fn key(&mut self, keys: &[Key], hint: &mut usize) -> Option<Result<usize, Cow<'a, str>>> {
        // The 24 bytes after the opening quote as three words (every known key is
        // shorter); near the end of the value, the string is read and looked up.
        if let Some(rest) = self.bytes.get(self.pos + 1..self.pos + 25) {
            let word = |i: usize| {
                let mut w = [0u8; 8];
                w.copy_from_slice(&rest[8 * i..8 * i + 8]);
                u64::from_le_bytes(w)
            };
            let words = [word(0), word(1), word(2)];
            let mut j = *hint;
            for _ in 0..keys.len() {
                if j >= keys.len() {
                    j = 0;
                }
                let key = &keys[j];
                let differ = (words[0] ^ key.words[0]) & key.masks[0]
                    | (words[1] ^ key.words[1]) & key.masks[1]
                    | (words[2] ^ key.words[2]) & key.masks[2];
                if differ == 0 && rest[key.len] == b'"' {
                    self.pos += key.len + 2;
                    *hint = j + 1;
                    return Some(Ok(j));
                }
                j += 1;
            }
        }
        let s = self.str()?;
        Some(keys.iter().position(|k| k.text == &*s).ok_or(s))
    }

    /// Skips a value serde would ignore (an unknown key of a GPU entry or a loaded
    /// model), taking only plain forms: strings, numbers without an exponent (serde
    /// skips those too, but they are not worth the risk), literals, and arrays and
    /// objects of them up to [`MAX_UNKNOWN_DEPTH`].
    pub(super) fn skip(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_UNKNOWN_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.str().map(drop),
            b'n' => self.literal(b"null"),
            b't' | b'f' => self.bool().map(drop),
            b'[' => self.array(|p| p.skip(depth + 1)).map(drop),
            b'{' => self.object(|p, _| p.skip(depth + 1)),
            _ => {
                let n = self.num()?;
                (!n.text.contains(['e', 'E'])).then_some(())
            }
        }
    }

    /// The value of an unknown top-level key, exactly as serde reads it into `extra`
    /// (serde_json's own `Value` parser, on the rest of the text).
    pub(super) fn extra_value(&mut self) -> Option<serde_json::Value> {
        self.peek()?;
        let rest = self.text.get(self.pos..)?;
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
        let v = values.next()?.ok()?;
        if depth(&v) > MAX_UNKNOWN_DEPTH {
            return None;
        }
        self.pos += values.byte_offset();
        Some(v)
    }
}

/// A known key, and its bytes as three little-endian words with the masks of the
/// bytes it has (a key is at most 23 bytes: `keys` fails to compile otherwise).
#[derive(Clone, Copy)]
pub(super) struct Key {
    text: &'static str,
    len: usize,
    words: [u64; 3],
    masks: [u64; 3],
}

pub(super) const fn keys<const N: usize>(texts: [&'static str; N]) -> [Key; N] {
    let mut out = [Key {
        text: "",
        len: 0,
        words: [0; 3],
        masks: [0; 3],
    }; N];
    let mut k = 0;
    while k < N {
        let b = texts[k].as_bytes();
        assert!(b.len() < 24, "a known key is at most 23 bytes");
        let mut i = 0;
        while i < b.len() {
            out[k].words[i / 8] |= (b[i] as u64) << (8 * (i % 8));
            out[k].masks[i / 8] |= 0xff << (8 * (i % 8));
            i += 1;
        }
        out[k].text = texts[k];
        out[k].len = b.len();
        k += 1;
    }
    out
}

/// Nesting depth of a JSON value (a scalar is 0), counted up to `MAX_UNKNOWN_DEPTH + 1`.
fn depth(v: &serde_json::Value) -> usize {
    fn go(v: &serde_json::Value, d: usize) -> usize {
        if d > MAX_UNKNOWN_DEPTH {
            return d;
        }
        match v {
            serde_json::Value::Array(a) => a.iter().map(|x| go(x, d + 1)).max().unwrap_or(d + 1),
            serde_json::Value::Object(m) => m.values().map(|x| go(x, d + 1)).max().unwrap_or(d + 1),
            _ => d,
        }
    }
    go(v, 0)
}
