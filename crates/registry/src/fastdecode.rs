//! A single-pass reader for the record shapes vramroute and SOLLOL write (stats record,
//! GPU entries, loaded models, RPC registration), working on the value's text.
//!
//! It handles what those writers produce (Python `json.dumps` or compact spacing, any key
//! order, plain and escaped strings, integers, floats, `null` for optional fields,
//! unknown keys) and answers `None` for anything else: a syntax error, a missing or
//! repeated field where serde would refuse it, a number in a form or range it does not
//! take exactly, a lone surrogate, deep nesting. The caller then decodes the value with
//! the serde path (`serde_json` and the visitors in `record.rs`), which gives the same
//! record or the exact error. So a `Some` here must always be exactly what serde would
//! produce; the property tests at the end of this file check that on generated and
//! mutated records.
//!
//! Why: decoding the two records was half of a cold discovery's client instructions
//! (≈ 18,900 of ≈ 37,400 per node with serde; ≈ 13,500 with this reader: docs/scale.md,
//! "Record decoding").

use std::borrow::Cow;

use crate::record::{GpuOffload, GpuStat, GpuStatsRecord, LoadedModel, RpcNodeRecord, SmolStr};

/// The deepest unknown value (top-level extra key, unknown key of a GPU entry or loaded
/// model) this reader takes; deeper ones go to serde (whose recursion limit is 128).
const MAX_UNKNOWN_DEPTH: usize = 32;

/// Decodes a stats record, or `None`: decode it with serde instead.
pub(crate) fn stats(text: &str) -> Option<GpuStatsRecord> {
    let mut p = Parser::new(text);
    let r = p.stats()?;
    p.end()?;
    Some(r)
}

/// Decodes a registration, or `None`: decode it with serde instead.
pub(crate) fn rpc(text: &str) -> Option<RpcNodeRecord> {
    let mut p = Parser::new(text);
    let r = p.rpc()?;
    p.end()?;
    Some(r)
}

/// A JSON number as written.
struct Num<'a> {
    text: &'a str,
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
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
    fn end(&mut self) -> Option<()> {
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

    fn bool(&mut self) -> Option<bool> {
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
    fn str(&mut self) -> Option<Cow<'a, str>> {
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

    fn smol(&mut self) -> Option<SmolStr> {
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
    fn u64(&mut self) -> Option<u64> {
        self.peek()?;
        self.digits()
    }

    #[inline]
    fn u32(&mut self) -> Option<u32> {
        self.u64().and_then(|v| u32::try_from(v).ok())
    }

    fn i32(&mut self) -> Option<i32> {
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
    fn f64(&mut self) -> Option<f64> {
        let n = self.num()?;
        let v: f64 = n.text.parse().ok()?;
        v.is_finite().then_some(v)
    }

    /// `null` as `None`, else `f`.
    #[inline]
    fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.null()? {
            Some(None)
        } else {
            f(self).map(Some)
        }
    }

    fn array<T>(&mut self, mut f: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
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
    fn keyed_object(
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
    fn skip(&mut self, depth: usize) -> Option<()> {
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
    fn extra_value(&mut self) -> Option<serde_json::Value> {
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

    fn gpu(&mut self) -> Option<GpuStat> {
        let mut g = GpuStat::default();
        // Bit per field: the derived visitor refuses a repeated field, and needs
        // `index` and `name`.
        let mut seen = 0u32;
        self.keyed_object(&GPU_KEYS, |p, key| {
            let Ok(k) = key else { return p.skip(1) };
            match k {
                0 => g.index = p.u32()?,
                1 => g.name = p.smol()?,
                2 => g.memory_total_mb = p.opt(Self::u64)?,
                3 => g.memory_free_mb = p.opt(Self::u64)?,
                4 => g.memory_used_mb = p.opt(Self::u64)?,
                5 => g.utilization_percent = p.opt(Self::u32)?,
                6 => g.temperature_c = p.opt(Self::i32)?,
                7 => g.uuid = p.opt(Self::smol)?,
                8 => g.pci_bus_id = p.opt(Self::smol)?,
                9 => g.power_w = p.opt(Self::f64)?,
                10 => g.memory_kind = p.opt(Self::smol)?,
                11 => g.driver = p.opt(Self::smol)?,
                _ => g.ggml_device = p.opt(Self::smol)?,
            }
            first_time(&mut seen, k)
        })?;
        (seen & 3 == 3).then_some(g)
    }

    fn loaded_model(&mut self) -> Option<LoadedModel> {
        let mut m = LoadedModel::default();
        let mut seen = 0u32;
        self.keyed_object(&MODEL_KEYS, |p, key| {
            let Ok(k) = key else { return p.skip(1) };
            match k {
                0 => m.name = p.smol()?,
                1 => m.size_mb = p.opt(Self::u64)?,
                _ => m.size_vram_mb = p.opt(Self::u64)?,
            }
            first_time(&mut seen, k)
        })?;
        (seen & 1 == 1).then_some(m)
    }

    fn gpu_offload(&mut self) -> Option<GpuOffload> {
        // A string names the variant (any other string is `Unknown`, `#[serde(other)]`);
        // serde's map form of an enum goes to serde.
        Some(match &*self.str()? {
            "on" => GpuOffload::On,
            "off" => GpuOffload::Off,
            _ => GpuOffload::Unknown,
        })
    }

    /// As the visitor in `record.rs`: a repeated top-level key keeps its last value.
    fn stats(&mut self) -> Option<GpuStatsRecord> {
        let mut r = GpuStatsRecord::default();
        let mut seen = 0u8;
        self.keyed_object(&STATS_KEYS, |p, key| {
            let k = match key {
                Ok(k) => k,
                Err(other) => {
                    let v = p.extra_value()?;
                    r.extra.insert(other.into_owned(), v);
                    return Some(());
                }
            };
            match k {
                0 => {
                    r.vendor = p.smol()?;
                    seen |= 1;
                }
                1 => {
                    r.gpus = p.array(Self::gpu)?;
                    seen |= 2;
                }
                2 => {
                    r.timestamp = p.f64()?;
                    seen |= 4;
                }
                3 => r.note = p.opt(Self::smol)?,
                4 => r.node_id = p.smol()?,
                5 => r.schema_version = p.opt(Self::u32)?,
                6 => r.reporter_version = p.opt(Self::smol)?,
                7 => r.hostname = p.opt(Self::smol)?,
                8 => r.gpu_offload = p.opt(Self::gpu_offload)?,
                9 => r.gpu_offload_reason = p.opt(Self::smol)?,
                10 => r.loaded_models = p.opt(|p| p.array(Self::loaded_model))?,
                11 => r.cpu_ram_total_mb = p.opt(Self::u64)?,
                12 => r.cpu_ram_free_mb = p.opt(Self::u64)?,
                13 => r.cpu_count = p.opt(Self::u32)?,
                14 => r.cpu_load_percent = p.opt(Self::f64)?,
                15 => r.ollama_url = p.opt(Self::smol)?,
                16 => r.rpc_host = p.opt(Self::smol)?,
                _ => r.rpc_port = p.opt(|p| p.u64().and_then(|v| u16::try_from(v).ok()))?,
            }
            Some(())
        })?;
        (seen == 7).then_some(r)
    }

    fn rpc(&mut self) -> Option<RpcNodeRecord> {
        let mut r = RpcNodeRecord::default();
        let mut seen = 0u8;
        self.keyed_object(&RPC_KEYS, |p, key| {
            let k = match key {
                Ok(k) => k,
                Err(other) => {
                    let v = p.extra_value()?;
                    r.extra.insert(other.into_owned(), v);
                    return Some(());
                }
            };
            match k {
                0 => r.has_gpu = p.bool()?,
                1 => r.gpu_devices = p.array(Self::smol)?,
                2 => r.gpu_vram_mb = p.array(Self::u64)?,
                3 => r.gpu_names = p.array(Self::smol)?,
                4 => r.cpu_ram_mb = p.u64()?,
                5 => r.device_config = p.smol()?,
                6 => r.memory_config = p.smol()?,
                7 => r.total_parallel_workers = p.u32()?,
                8 => r.schema_version = p.opt(Self::u32)?,
                9 => r.reporter_version = p.opt(Self::smol)?,
                10 => r.hostname = p.opt(Self::smol)?,
                11 => r.ggml_devices = p.opt(|p| p.array(Self::smol))?,
                12 => r.gpu_uuids = p.opt(|p| p.array(Self::smol))?,
                13 => r.gpu_pci_bus_ids = p.opt(|p| p.array(Self::smol))?,
                14 => r.gpu_vram_total_mb = p.opt(|p| p.array(Self::u64))?,
                15 => r.cpu_ram_total_mb = p.opt(Self::u64)?,
                16 => r.cpu_count = p.opt(Self::u32)?,
                _ => r.reserve_fraction = p.opt(Self::f64)?,
            }
            if k < 8 {
                seen |= 1 << k;
            }
            Some(())
        })?;
        (seen == 0xff).then_some(r)
    }
}

/// The keys of a GPU entry, in the order the derived `Serialize` writes them; the
/// indexes are those `Parser::gpu` matches on.
const GPU_KEYS: [Key; 13] = keys([
    "index",
    "name",
    "memory_total_mb",
    "memory_free_mb",
    "memory_used_mb",
    "utilization_percent",
    "temperature_c",
    "uuid",
    "pci_bus_id",
    "power_w",
    "memory_kind",
    "driver",
    "ggml_device",
]);

/// The keys of a loaded model, in writer order.
const MODEL_KEYS: [Key; 3] = keys(["name", "size_mb", "size_vram_mb"]);

/// The keys of a stats record, in the order `GpuStatsRecord`'s `Serialize` writes them
/// (SOLLOL's `vendor, gpus, timestamp[, note], node_id`, then ours).
const STATS_KEYS: [Key; 18] = keys([
    "vendor",
    "gpus",
    "timestamp",
    "note",
    "node_id",
    "schema_version",
    "reporter_version",
    "hostname",
    "gpu_offload",
    "gpu_offload_reason",
    "loaded_models",
    "cpu_ram_total_mb",
    "cpu_ram_free_mb",
    "cpu_count",
    "cpu_load_percent",
    "ollama_url",
    "rpc_host",
    "rpc_port",
]);

/// The keys of a registration, in writer order; the first eight are required.
const RPC_KEYS: [Key; 18] = keys([
    "has_gpu",
    "gpu_devices",
    "gpu_vram_mb",
    "gpu_names",
    "cpu_ram_mb",
    "device_config",
    "memory_config",
    "total_parallel_workers",
    "schema_version",
    "reporter_version",
    "hostname",
    "ggml_devices",
    "gpu_uuids",
    "gpu_pci_bus_ids",
    "gpu_vram_total_mb",
    "cpu_ram_total_mb",
    "cpu_count",
    "reserve_fraction",
]);

/// A known key, and its bytes as three little-endian words with the masks of the
/// bytes it has (a key is at most 23 bytes: `keys` fails to compile otherwise).
#[derive(Clone, Copy)]
struct Key {
    text: &'static str,
    len: usize,
    words: [u64; 3],
    masks: [u64; 3],
}

const fn keys<const N: usize>(texts: [&'static str; N]) -> [Key; N] {
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

/// Marks field `k` as read in `seen`; `None` (left to serde, whose derived visitor
/// refuses a repeated field) when it was read before.
fn first_time(seen: &mut u32, k: usize) -> Option<()> {
    let bit = 1u32.checked_shl(u32::try_from(k).ok()?)?;
    if *seen & bit != 0 {
        return None;
    }
    *seen |= bit;
    Some(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;
    use crate::validate::{parse_rpc_serde, parse_stats_serde};

    /// The property: whatever this reader takes, serde takes too and reads the same
    /// (`Debug` too, so `-0.0` and `0.0` differ). A `None` is always fine (serde decides).
    /// Answers whether the fast path took it.
    fn same_stats(text: &str) -> bool {
        let fast = stats(text);
        if let Some(f) = &fast {
            let s = parse_stats_serde(text)
                .unwrap_or_else(|e| panic!("fast path took what serde refuses ({e}): {text}"));
            assert_eq!(f, &s, "{text}");
            assert_eq!(format!("{f:?}"), format!("{s:?}"), "{text}");
        }
        fast.is_some()
    }

    fn same_rpc(text: &str) -> bool {
        let fast = rpc(text);
        if let Some(f) = &fast {
            let s = parse_rpc_serde(text)
                .unwrap_or_else(|e| panic!("fast path took what serde refuses ({e}): {text}"));
            assert_eq!(f, &s, "{text}");
            assert_eq!(format!("{f:?}"), format!("{s:?}"), "{text}");
        }
        fast.is_some()
    }

    // --- generated records -------------------------------------------------------

    fn text() -> impl Strategy<Value = SmolStr> {
        prop_oneof![
            3 => "[ -~]{0,30}",
            1 => ".{0,12}",
            1 => prop::sample::select(vec!["", "nvidia", "NVIDIA GeForce RTX 3090", "cuda:0", "é\"\\/\u{1F600}\n\t\u{1}"])
                .prop_map(str::to_owned),
        ]
        .prop_map(SmolStr::from)
    }

    fn float() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_map(|f| if f.is_finite() { f } else { 0.5 }),
            (0u64..5_000_000_000, 0u32..10_000_000)
                .prop_map(|(s, f)| s as f64 + f64::from(f) / 1e7),
            prop::sample::select(vec![0.0, -0.0, 1e16, 1e-5, 12.5, 215.5, 5e-324, f64::MAX]),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            float().prop_map(Value::from),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn extra() -> impl Strategy<Value = BTreeMap<String, Value>> {
        prop::collection::btree_map("x_[a-z\u{e9}]{0,6}", json_value(), 0..3)
    }

    fn gpu() -> impl Strategy<Value = GpuStat> {
        (
            (
                0u32..600,
                text(),
                prop::option::of(any::<u64>()),
                prop::option::of(any::<u64>()),
                prop::option::of(any::<u64>()),
            ),
            (
                prop::option::of(any::<u32>()),
                prop::option::of(any::<i32>()),
                prop::option::of(text()),
                prop::option::of(text()),
                prop::option::of(float()),
            ),
            (
                prop::option::of(text()),
                prop::option::of(text()),
                prop::option::of(text()),
            ),
        )
            .prop_map(
                |(
                    (index, name, total, free, used),
                    (util, temp, uuid, pci, power),
                    (kind, driver, ggml),
                )| {
                    let mut g = GpuStat::new(index, name);
                    g.memory_total_mb = total;
                    g.memory_free_mb = free;
                    g.memory_used_mb = used;
                    g.utilization_percent = util;
                    g.temperature_c = temp;
                    g.uuid = uuid;
                    g.pci_bus_id = pci;
                    g.power_w = power;
                    g.memory_kind = kind;
                    g.driver = driver;
                    g.ggml_device = ggml;
                    g
                },
            )
    }

    fn stats_record() -> impl Strategy<Value = GpuStatsRecord> {
        let offload =
            prop::sample::select(vec![GpuOffload::On, GpuOffload::Off, GpuOffload::Unknown]);
        let model = (
            text(),
            prop::option::of(any::<u64>()),
            prop::option::of(any::<u64>()),
        )
            .prop_map(|(n, s, v)| LoadedModel::new(n, s, v));
        (
            (text(), text(), float(), prop::collection::vec(gpu(), 0..4)),
            (
                prop::option::of(any::<u32>()),
                prop::option::of(text()),
                prop::option::of(text()),
                prop::option::of(offload),
                prop::option::of(text()),
                prop::option::of(text()),
            ),
            (
                prop::option::of(prop::collection::vec(model, 0..3)),
                prop::option::of(any::<u64>()),
                prop::option::of(any::<u64>()),
                prop::option::of(any::<u32>()),
                prop::option::of(float()),
            ),
            (
                prop::option::of(text()),
                prop::option::of(text()),
                prop::option::of(any::<u16>()),
                extra(),
            ),
        )
            .prop_map(
                |(
                    (node, vendor, ts, gpus),
                    (sv, rv, host, off, reason, note),
                    (models, rt, rf, cc, load),
                    (url, rh, rp, extra),
                )| {
                    let mut r = GpuStatsRecord::new(node, vendor, ts);
                    r.gpus = gpus;
                    r.schema_version = sv;
                    r.reporter_version = rv;
                    r.hostname = host;
                    r.gpu_offload = off;
                    r.gpu_offload_reason = reason;
                    r.note = note;
                    r.loaded_models = models;
                    r.cpu_ram_total_mb = rt;
                    r.cpu_ram_free_mb = rf;
                    r.cpu_count = cc;
                    r.cpu_load_percent = load;
                    r.ollama_url = url;
                    r.rpc_host = rh;
                    r.rpc_port = rp;
                    r.extra = extra;
                    r
                },
            )
    }

    fn rpc_record() -> impl Strategy<Value = RpcNodeRecord> {
        let strs = || prop::collection::vec(text(), 0..4);
        let nums = || prop::collection::vec(any::<u64>(), 0..4);
        (
            (
                any::<bool>(),
                strs(),
                nums(),
                strs(),
                any::<u64>(),
                text(),
                text(),
                any::<u32>(),
            ),
            (
                prop::option::of(any::<u32>()),
                prop::option::of(text()),
                prop::option::of(text()),
                prop::option::of(strs()),
                prop::option::of(strs()),
                prop::option::of(strs()),
                prop::option::of(nums()),
            ),
            (
                prop::option::of(any::<u64>()),
                prop::option::of(any::<u32>()),
                prop::option::of(float()),
                extra(),
            ),
        )
            .prop_map(
                |(
                    (has, dev, vram, names, ram, dc, mc, workers),
                    (sv, rv, host, ggml, uuids, pci, total),
                    (rt, cc, rf, extra),
                )| {
                    let mut r = RpcNodeRecord::cpu_only(ram);
                    r.has_gpu = has;
                    r.gpu_devices = dev;
                    r.gpu_vram_mb = vram;
                    r.gpu_names = names;
                    r.device_config = dc;
                    r.memory_config = mc;
                    r.total_parallel_workers = workers;
                    r.schema_version = sv;
                    r.reporter_version = rv;
                    r.hostname = host;
                    r.ggml_devices = ggml;
                    r.gpu_uuids = uuids;
                    r.gpu_pci_bus_ids = pci;
                    r.gpu_vram_total_mb = total;
                    r.cpu_ram_total_mb = rt;
                    r.cpu_count = cc;
                    r.reserve_fraction = rf;
                    r.extra = extra;
                    r
                },
            )
    }

    // --- mutations ---------------------------------------------------------------

    /// JSON as written, keys in any order and possibly repeated; `Raw` is verbatim text
    /// (numbers in any form, and deliberately broken tokens).
    #[derive(Clone, Debug)]
    enum J {
        Raw(String),
        Str(String),
        Arr(Vec<J>),
        Obj(Vec<(String, J)>),
    }

    fn from_value(v: &Value) -> J {
        match v {
            Value::String(s) => J::Str(s.clone()),
            Value::Array(a) => J::Arr(a.iter().map(from_value).collect()),
            Value::Object(m) => J::Obj(m.iter().map(|(k, v)| (k.clone(), from_value(v))).collect()),
            other => J::Raw(other.to_string()),
        }
    }

    /// Values a mutation puts in: unusual numbers, other types, broken tokens.
    const ODD: [&str; 34] = [
        "null",
        "-0",
        "0",
        "-1",
        "1.0",
        "1e2",
        "1E+2",
        "-1.5e-3",
        "4294967296",
        "65536",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "1e400",
        "-1e400",
        "1e-400",
        "0.1",
        "123456789012345678901234567890",
        "true",
        "false",
        "\"s\"",
        "\"on\"",
        "\"off\"",
        "[]",
        "{}",
        "[1,[2,{\"a\":null}]]",
        "01",
        "1.",
        "-",
        "\"\\ud800\"",
        "\"a\u{1}b\"",
        "\"\\x\"",
        "nul",
    ];

    /// How many objects `j` holds (itself included).
    fn count_objects(j: &J) -> usize {
        match j {
            J::Obj(entries) => 1 + entries.iter().map(|(_, v)| count_objects(v)).sum::<usize>(),
            J::Arr(items) => items.iter().map(count_objects).sum(),
            J::Raw(_) | J::Str(_) => 0,
        }
    }

    /// The `n`th object of `j`, depth first (the root is the 0th).
    fn nth_object<'a>(j: &'a mut J, n: &mut usize) -> Option<&'a mut Vec<(String, J)>> {
        match j {
            J::Obj(entries) => {
                if *n == 0 {
                    return Some(entries);
                }
                *n -= 1;
                entries.iter_mut().find_map(|(_, v)| nth_object(v, n))
            }
            J::Arr(items) => items.iter_mut().find_map(|v| nth_object(v, n)),
            J::Raw(_) | J::Str(_) => None,
        }
    }

    fn mutate(j: &mut J, ops: &[(u8, u32, u32)]) {
        for &(op, which, arg) in ops {
            // One object per op, found afresh (ops change the tree).
            let count = count_objects(j);
            if count == 0 {
                return;
            }
            let Some(entries) = nth_object(j, &mut (which as usize % count)) else {
                return;
            };
            let arg = arg as usize;
            let odd = || J::Raw(ODD[arg % ODD.len()].to_owned());
            match op % 7 {
                0 => {
                    let n = entries.len();
                    if n > 1 {
                        entries.rotate_left(arg % n);
                        entries.swap(0, arg % n);
                    }
                }
                1 => entries.insert(arg % (entries.len() + 1), (format!("zz{arg}"), odd())),
                2 | 4 if !entries.is_empty() => {
                    let n = entries.len();
                    entries[arg % n].1 = if op % 7 == 2 {
                        J::Raw("null".into())
                    } else {
                        odd()
                    };
                }
                3 if !entries.is_empty() => {
                    let n = entries.len();
                    let (k, v) = entries[arg % n].clone();
                    let first = if arg.is_multiple_of(2) {
                        v.clone()
                    } else {
                        odd()
                    };
                    entries.insert(arg % n, (k, first));
                }
                5 if !entries.is_empty() => {
                    let n = entries.len();
                    entries.remove(arg % n);
                }
                6 if !entries.is_empty() => {
                    // A key spelt differently (escapes come from the printer) or cased.
                    let n = entries.len();
                    let k = &mut entries[arg % n].0;
                    if arg.is_multiple_of(3) {
                        *k = k.to_uppercase();
                    }
                }
                _ => {}
            }
        }
    }

    /// How a mutated value is printed.
    #[derive(Clone, Copy, Debug)]
    struct Style {
        /// Whitespace after `,` and `:` and around brackets.
        space: u8,
        /// Bits choosing which characters of strings are written as `\u` escapes.
        escapes: u64,
        /// Upper-case hex digits in `\u` escapes.
        upper: bool,
    }

    fn print(j: &J, st: &Style, counter: &mut u32, out: &mut String) {
        let ws = match st.space % 4 {
            0 => "",
            1 => " ",
            2 => "\n  ",
            _ => " \t\r\n",
        };
        match j {
            J::Raw(s) => out.push_str(s),
            J::Str(s) => print_str(s, st, counter, out),
            J::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(ws);
                    print(v, st, counter, out);
                }
                out.push_str(ws);
                out.push(']');
            }
            J::Obj(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(ws);
                    print_str(k, st, counter, out);
                    out.push_str(ws);
                    out.push(':');
                    out.push_str(ws);
                    print(v, st, counter, out);
                }
                out.push_str(ws);
                out.push('}');
            }
        }
    }

    fn print_str(s: &str, st: &Style, counter: &mut u32, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            *counter += 1;
            let escape = st.escapes >> (*counter % 64) & 1 == 1;
            let mut buf = [0u16; 2];
            match c {
                '"' if !escape => out.push_str("\\\""),
                '\\' if !escape => out.push_str("\\\\"),
                '/' if escape && counter.is_multiple_of(2) => out.push_str("\\/"),
                '\n' if !escape => out.push_str("\\n"),
                '\t' if !escape => out.push_str("\\t"),
                c if escape || c < ' ' || c == '"' || c == '\\' => {
                    for unit in c.encode_utf16(&mut buf) {
                        if st.upper {
                            out.push_str(&format!("\\u{unit:04X}"));
                        } else {
                            out.push_str(&format!("\\u{unit:04x}"));
                        }
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }

    fn style() -> impl Strategy<Value = Style> {
        (
            any::<u8>(),
            prop_oneof![Just(0u64), any::<u64>()],
            any::<bool>(),
        )
            .prop_map(|(space, escapes, upper)| Style {
                space,
                escapes,
                upper,
            })
    }

    fn ops() -> impl Strategy<Value = Vec<(u8, u32, u32)>> {
        prop::collection::vec((any::<u8>(), any::<u32>(), any::<u32>()), 0..5)
    }

    fn mutated(json: &str, ops: &[(u8, u32, u32)], st: &Style) -> String {
        let v: Value = serde_json::from_str(json).expect("our writer writes JSON");
        let mut j = from_value(&v);
        mutate(&mut j, ops);
        let mut out = String::new();
        print(&j, st, &mut 0, &mut out);
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// What our writer (Python-style and compact) writes, the fast path takes, and
        /// reads as serde does.
        #[test]
        fn stats_as_written(r in stats_record()) {
            let py = r.to_json();
            prop_assert!(same_stats(&py), "fast path refused our own record: {py}");
            let compact = serde_json::to_string(&r).expect("serialises");
            prop_assert!(same_stats(&compact), "fast path refused our own record: {compact}");
        }

        #[test]
        fn rpc_as_written(r in rpc_record()) {
            let py = r.to_json();
            prop_assert!(same_rpc(&py), "fast path refused our own record: {py}");
            let compact = serde_json::to_string(&r).expect("serialises");
            prop_assert!(same_rpc(&compact), "fast path refused our own record: {compact}");
        }

        /// Reordered keys, whitespace, escapes, unknown keys, nulls, repeated keys, odd
        /// numbers, broken tokens: the fast path either reads exactly what serde reads or
        /// leaves the value to serde.
        #[test]
        fn stats_mutated(r in stats_record(), ops in ops(), st in style()) {
            same_stats(&mutated(&r.to_json(), &ops, &st));
        }

        #[test]
        fn rpc_mutated(r in rpc_record(), ops in ops(), st in style()) {
            same_rpc(&mutated(&r.to_json(), &ops, &st));
        }

        /// Floats in any decimal form read as serde_json's `float_roundtrip` reads them.
        #[test]
        fn floats_read_as_serde(
            int in "-?(0|[1-9][0-9]{0,24})",
            frac in prop::option::of("[0-9]{1,30}"),
            exp in prop::option::of("[eE][+-]?[0-9]{1,3}"),
        ) {
            let num = format!("{int}{}{}", frac.map_or(String::new(), |f| format!(".{f}")), exp.unwrap_or_default());
            same_stats(&format!(r#"{{"vendor":"none","gpus":[],"timestamp":{num},"cpu_load_percent":{num}}}"#));
        }
    }

    proptest! {
        // Each case reads every prefix of two records (a thousand reads or so).
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Hostile bytes: every prefix of a written record, and the record with bytes
        /// overwritten, never panic, and whatever the fast path takes serde reads alike.
        #[test]
        fn truncated_and_garbled_never_panic(
            r in stats_record(),
            q in rpc_record(),
            noise in prop::collection::vec((any::<u32>(), any::<u8>()), 1..4),
        ) {
            for json in [r.to_json(), q.to_json()] {
                let stats_kind = json.contains("\"vendor\"");
                let check = |t: &str| if stats_kind { same_stats(t) } else { same_rpc(t) };
                for end in (0..json.len()).filter(|&i| json.is_char_boundary(i)) {
                    prop_assert!(!check(&json[..end]), "a prefix was taken: {}", &json[..end]);
                }
                let mut bytes = json.clone().into_bytes();
                for &(at, b) in &noise {
                    let i = at as usize % bytes.len();
                    bytes[i] = b;
                }
                if let Ok(t) = std::str::from_utf8(&bytes) {
                    check(t);
                }
            }
        }
    }

    /// Hand-picked cases: each must give the same as serde, and the first ones must be
    /// taken by the fast path.
    #[test]
    fn edge_cases_match_serde() {
        let taken = [
            r#"{"vendor":"none","gpus":[],"timestamp":1}"#,
            r#"{"vendor":"none","gpus":[],"timestamp":-0}"#,
            r#"{"vendor":"none","gpus":[],"timestamp":-0.0,"node_id":"a"}"#,
            r#"{"vendor":"none","gpus":[],"timestamp":1,"vendor":"amd"}"#,
            r#"{"vend\u006fr":"none","gpus":[],"timestamp":1e3}"#,
            r#" {"vendor":"none","gpus":[{"index":0,"name":"x","zz":[1,{"a":"b"}],"temperature_c":-5}],"timestamp":1} "#,
            r#"{"vendor":"none","gpus":[],"timestamp":1,"x":{"a":[1,2.5,-3,1e300]}}"#,
            r#"{"vendor":"none","gpus":[],"timestamp":1,"gpu_offload":"maybe","note":null}"#,
            r#"{"vendor":"\ud83d\ude00","gpus":[],"timestamp":1}"#,
        ];
        for t in taken {
            assert!(same_stats(t), "fast path should take {t}");
        }
        let left = [
            r#"{"vendor":"none","gpus":[{"index":0,"name":"x","temperature_c":-0}],"timestamp":1}"#,
            r#"{"vendor":"none","gpus":[{"index":0,"name":"x","index":1}],"timestamp":1}"#,
            r#"{"vendor":"none","gpus":[{"name":"x"}],"timestamp":1}"#,
            r#"{"vendor":"none","gpus":[],"timestamp":1e400}"#,
            r#"{"vendor":"none","gpus":[],"timestamp":1,"cpu_count":4294967296}"#,
            r#"{"vendor":"none","gpus":[],"timestamp":1,"cpu_count":1.0}"#,
            r#"{"vendor":"none","gpus":[],"timestamp":1,}"#,
            r#"{"vendor":"\ud800","gpus":[],"timestamp":1}"#,
            r#"{"vendor":"none","gpus":[],"timestamp":1} x"#,
            r#"{"vendor":"none","gpus":[],"timestamp":01}"#,
            r#"{"vendor":null,"gpus":[],"timestamp":1}"#,
            r#"{"vendor":"none","gpus":[],"timestamp":1,"gpu_offload":{"on":null}}"#,
            r#"[]"#,
            "",
        ];
        for t in left {
            assert!(!same_stats(t), "fast path should leave {t} to serde");
        }
        // Deep unknown values go to serde (whose recursion limit then decides).
        let deep = format!(
            r#"{{"vendor":"none","gpus":[],"timestamp":1,"x":{}{}}}"#,
            "[".repeat(127),
            "]".repeat(127)
        );
        assert!(!same_stats(&deep));
        assert!(parse_stats_serde(&deep).is_err(), "serde's recursion limit");
        assert!(same_rpc(
            r#"{"has_gpu":false,"gpu_devices":[],"gpu_vram_mb":[],"gpu_names":[],"cpu_ram_mb":1,"device_config":"cpu","memory_config":"1","total_parallel_workers":1,"ggml_devices":null,"x":[]}"#
        ));
        assert!(!same_rpc(
            r#"{"has_gpu":0,"gpu_devices":[],"gpu_vram_mb":[],"gpu_names":[],"cpu_ram_mb":1,"device_config":"cpu","memory_config":"1","total_parallel_workers":1}"#
        ));
        assert!(!same_rpc(
            r#"{"gpu_devices":[],"gpu_vram_mb":[],"gpu_names":[],"cpu_ram_mb":1,"device_config":"cpu","memory_config":"1","total_parallel_workers":1}"#
        ));
    }
}
