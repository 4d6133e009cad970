//! A reader for GGUF headers: metadata and tensor infos, never the weights.
//!
//! GGUF files are untrusted. The reader caps every count, string and array length and
//! dimension, uses checked arithmetic, stops at the first byte that does not add up, and
//! never allocates in proportion to a size the file claims: strings are read only up to
//! a small keep-limit (longer ones are skipped), arrays are walked without being stored
//! (except small integer arrays, such as per-layer head counts), and tensor infos are
//! stored as they are read, so a truncated file fails before it can cost memory.
//!
//! The total work is bounded too: a header may span at most [`MAX_HEADER_BYTES`] (and
//! never more than the file holds: every length is checked against the bytes that are
//! left before anything is read or skipped, so a sparse file that claims terabytes is
//! refused at once instead of walked), every loop consumes at least one byte per
//! iteration, and at most [`MAX_KEPT_INTS`] integers are kept across all arrays. A
//! header therefore costs time proportional to at most [`MAX_HEADER_BYTES`] and memory
//! proportional to the bytes it really holds. [`GgufInfo::from_path`] opens the file
//! through the probe's bounded reader, so a FIFO or device is refused without blocking.

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};
use std::path::Path;

use serde::Serialize;
use vramroute_probe::local_file::open_regular_file;

use crate::error::{Error, Result};

/// Most tensors a header may declare (real models have a few thousand at most).
pub const MAX_TENSORS: u64 = 1 << 16;
/// Most metadata entries a header may declare.
pub const MAX_KV: u64 = 1 << 16;
/// Longest metadata key or tensor name, bytes.
pub const MAX_KEY_BYTES: u64 = 1 << 16;
/// Longest string value, bytes (chat templates are tens of KiB).
pub const MAX_STRING_BYTES: u64 = 1 << 24;
/// Most elements in one metadata array (vocabularies have a few hundred thousand).
pub const MAX_ARRAY_LEN: u64 = 1 << 24;
/// Deepest nesting of arrays inside arrays.
pub const MAX_ARRAY_DEPTH: u32 = 2;
/// Most dimensions of a tensor (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// Largest `block_count` accepted.
pub const MAX_LAYERS: u64 = 1 << 14;
/// Most bytes a header (magic to the last tensor info) may span. Real headers are a
/// few MiB to a few tens of MiB (vocabularies and merges of 250k entries); this caps
/// how long a hostile one can keep the reader busy.
pub const MAX_HEADER_BYTES: u64 = 256 << 20;
/// Most integers kept across all small integer arrays of one header (further arrays
/// are summarised as [`GgufValue::Array`]).
pub const MAX_KEPT_INTS: u64 = 1 << 20;
/// String values longer than this are skipped, not kept (their length is recorded).
const KEEP_STRING_BYTES: u64 = 4096;
/// Integer arrays up to this length are kept (per-layer head counts); longer ones are not.
const KEEP_ARRAY_LEN: u64 = 4096;

/// One metadata value. Large values are summarised, not stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub enum GgufValue {
    /// Any unsigned integer type.
    Uint(u64),
    /// Any signed integer type.
    Int(i64),
    /// `f32` or `f64`.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A string of at most 4096 bytes (lossily decoded as UTF-8).
    Str(String),
    /// A longer string, skipped.
    LongStr {
        /// Its length, bytes.
        len: u64,
    },
    /// An integer array of at most 4096 elements.
    Ints(Vec<i64>),
    /// Any other array, skipped.
    Array {
        /// GGUF element type id.
        elem_type: u32,
        /// Number of elements.
        len: u64,
    },
}

impl GgufValue {
    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::Uint(v) => Some(v),
            GgufValue::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a string, if it is a kept string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A ggml tensor type id, with the block size table needed to size tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct GgmlType(pub u32);

impl GgmlType {
    /// `(name, elements per block, bytes per block)` for the types this crate can size.
    fn info(self) -> Option<(&'static str, u64, u64)> {
        Some(match self.0 {
            0 => ("F32", 1, 4),
            1 => ("F16", 1, 2),
            2 => ("Q4_0", 32, 18),
            3 => ("Q4_1", 32, 20),
            6 => ("Q5_0", 32, 22),
            7 => ("Q5_1", 32, 24),
            8 => ("Q8_0", 32, 34),
            10 => ("Q2_K", 256, 84),
            11 => ("Q3_K", 256, 110),
            12 => ("Q4_K", 256, 144),
            13 => ("Q5_K", 256, 176),
            14 => ("Q6_K", 256, 210),
            15 => ("Q8_K", 256, 292),
            16 => ("IQ2_XXS", 256, 66),
            17 => ("IQ2_XS", 256, 74),
            18 => ("IQ3_XXS", 256, 98),
            19 => ("IQ1_S", 256, 50),
            20 => ("IQ4_NL", 32, 18),
            21 => ("IQ3_S", 256, 110),
            22 => ("IQ2_S", 256, 82),
            23 => ("IQ4_XS", 256, 136),
            24 => ("I8", 1, 1),
            25 => ("I16", 1, 2),
            26 => ("I32", 1, 4),
            27 => ("I64", 1, 8),
            28 => ("F64", 1, 8),
            29 => ("IQ1_M", 256, 56),
            30 => ("BF16", 1, 2),
            34 => ("TQ1_0", 256, 54),
            35 => ("TQ2_0", 256, 66),
            39 => ("MXFP4", 32, 17),
            _ => return None,
        })
    }

    /// The type's ggml name (`Q4_K`), if known.
    pub fn name(self) -> Option<&'static str> {
        self.info().map(|(name, _, _)| name)
    }

    /// `(elements per block, bytes per block)`, if known.
    pub fn block(self) -> Option<(u64, u64)> {
        self.info().map(|(_, elems, bytes)| (elems, bytes))
    }
}

/// One tensor's header entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TensorInfo {
    /// Tensor name (`blk.3.attn_q.weight`).
    pub name: String,
    /// Dimensions, innermost first (at most 4).
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Offset of its data from the start of the data section, bytes.
    pub offset: u64,
    /// Size of its data, bytes.
    pub size_bytes: u64,
}

impl TensorInfo {
    /// A tensor of `size_bytes` at `offset`, for building headers by hand (tests, tools).
    pub fn new(
        name: impl Into<String>,
        dims: Vec<u64>,
        ggml_type: GgmlType,
        offset: u64,
        size_bytes: u64,
    ) -> Self {
        TensorInfo {
            name: name.into(),
            dims,
            ggml_type,
            offset,
            size_bytes,
        }
    }

    /// The repeating layer this tensor belongs to (`blk.N.` prefix), if any.
    pub fn layer(&self) -> Option<u32> {
        let rest = self.name.strip_prefix("blk.")?;
        let digits = rest.split('.').next()?;
        digits.parse().ok()
    }
}

/// What a GGUF header says: version, metadata and tensor infos.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct GgufInfo {
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata, keyed by GGUF key; large values summarised (see [`GgufValue`]).
    pub metadata: BTreeMap<String, GgufValue>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    /// Bytes of header before the (aligned) data section.
    pub header_bytes: u64,
}

/// Parses a GGUF header from bytes (the whole file or at least its header).
pub fn parse_gguf(bytes: &[u8]) -> Result<GgufInfo> {
    Parser::new(bytes, Some(bytes.len() as u64)).parse()
}

impl GgufInfo {
    /// A header built by hand (tests, tools): `version`, metadata, tensor infos.
    pub fn new(
        version: u32,
        metadata: BTreeMap<String, GgufValue>,
        tensors: Vec<TensorInfo>,
        header_bytes: u64,
    ) -> Self {
        GgufInfo {
            version,
            metadata,
            tensors,
            header_bytes,
        }
    }

    /// Reads only the header of the GGUF file at `path`. Only a regular file is read
    /// (a FIFO or device is refused at once), and no length the header claims may
    /// reach past the file's end.
    pub fn from_path(path: impl AsRef<Path>) -> Result<GgufInfo> {
        let (file, size_bytes) = open_regular_file(path.as_ref())?;
        Parser::new(BufReader::with_capacity(1 << 16, file), Some(size_bytes)).parse()
    }

    /// Parses a GGUF header from any reader, consuming only the header (at most
    /// [`MAX_HEADER_BYTES`]).
    pub fn from_reader<R: Read>(reader: R) -> Result<GgufInfo> {
        Parser::new(reader, None).parse()
    }

    /// A metadata value.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// `general.architecture` (`llama`, `qwen2`, ...).
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture")?.as_str()
    }

    /// `general.name`, if present.
    pub fn model_name(&self) -> Option<&str> {
        self.get("general.name")?.as_str()
    }

    /// An architecture-scoped number: `{arch}.{suffix}` (e.g. `block_count`).
    pub fn arch_u64(&self, suffix: &str) -> Option<u64> {
        let arch = self.architecture()?;
        self.get(&format!("{arch}.{suffix}"))?.as_u64()
    }

    /// An architecture-scoped value that is a number or a per-layer array, expanded to
    /// one value per layer (`None` if missing, wrongly typed or of the wrong length).
    pub fn arch_per_layer(&self, suffix: &str, layers: usize) -> Option<Vec<u64>> {
        let arch = self.architecture()?;
        match self.get(&format!("{arch}.{suffix}"))? {
            GgufValue::Ints(values) if values.len() == layers => values
                .iter()
                .map(|v| u64::try_from(*v).ok())
                .collect::<Option<Vec<u64>>>(),
            other => other.as_u64().map(|v| vec![v; layers]),
        }
    }

    /// Total bytes of all tensors.
    pub fn weights_bytes(&self) -> u64 {
        self.tensors
            .iter()
            .fold(0u64, |acc, t| acc.saturating_add(t.size_bytes))
    }
}

/// GGUF metadata value type ids.
mod vt {
    pub(super) const U8: u32 = 0;
    pub(super) const I8: u32 = 1;
    pub(super) const U16: u32 = 2;
    pub(super) const I16: u32 = 3;
    pub(super) const U32: u32 = 4;
    pub(super) const I32: u32 = 5;
    pub(super) const F32: u32 = 6;
    pub(super) const BOOL: u32 = 7;
    pub(super) const STRING: u32 = 8;
    pub(super) const ARRAY: u32 = 9;
    pub(super) const U64: u32 = 10;
    pub(super) const I64: u32 = 11;
    pub(super) const F64: u32 = 12;
}

/// Fixed size of a scalar value type, bytes.
fn scalar_size(ty: u32) -> Option<u64> {
    match ty {
        vt::U8 | vt::I8 | vt::BOOL => Some(1),
        vt::U16 | vt::I16 => Some(2),
        vt::U32 | vt::I32 | vt::F32 => Some(4),
        vt::U64 | vt::I64 | vt::F64 => Some(8),
        _ => None,
    }
}

/// A string read from the header: kept, or skipped because it was long.
enum StrRead {
    Kept(String),
    Skipped(u64),
}

struct Parser<R> {
    inner: R,
    pos: u64,
    /// Bytes the header may span: the file's size when known, at most
    /// [`MAX_HEADER_BYTES`].
    limit: u64,
    /// Whether `limit` is the file's end (else it is the cap).
    limit_is_end: bool,
    /// Integers kept so far (see [`MAX_KEPT_INTS`]).
    kept_ints: u64,
}

impl<R: Read> Parser<R> {
    fn new(inner: R, size_bytes: Option<u64>) -> Self {
        let limit = size_bytes.map_or(MAX_HEADER_BYTES, |s| s.min(MAX_HEADER_BYTES));
        Parser {
            inner,
            pos: 0,
            limit,
            limit_is_end: size_bytes.is_some_and(|s| s <= MAX_HEADER_BYTES),
            kept_ints: 0,
        }
    }

    /// Checks that `n` more bytes lie within the header's limit before they are read.
    fn need(&self, n: u64, what: &str) -> Result<()> {
        let left = self.limit.saturating_sub(self.pos);
        if n <= left {
            return Ok(());
        }
        Err(if self.limit_is_end {
            self.err(format!(
                "{what} needs {n} bytes but only {left} are left in the file (truncated or hostile file)"
            ))
        } else {
            self.err(format!(
                "{what} would take the header past the {MAX_HEADER_BYTES}-byte limit (corrupt or hostile file)"
            ))
        })
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        Error::Gguf {
            offset: self.pos,
            reason: reason.into(),
        }
    }

    fn io_err(&self, e: &io::Error, what: &str) -> Error {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            self.err(format!(
                "file ends inside {what} (truncated download or copy?)"
            ))
        } else {
            self.err(format!("read error in {what}: {e}"))
        }
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        self.need(N as u64, what)?;
        let mut buf = [0u8; N];
        self.inner
            .read_exact(&mut buf)
            .map_err(|e| self.io_err(&e, what))?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        self.bytes::<4>(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        self.bytes::<8>(what).map(u64::from_le_bytes)
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<()> {
        self.need(n, what)?;
        let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())
            .map_err(|e| self.io_err(&e, what))?;
        self.pos += copied;
        if copied < n {
            return Err(self.err(format!(
                "file ends inside {what} ({} of {n} bytes missing; truncated?)",
                n - copied
            )));
        }
        Ok(())
    }

    /// Reads a length-prefixed string. Strings longer than `cap` are an error; strings
    /// longer than `keep` are skipped and only their length is returned.
    fn string(&mut self, cap: u64, keep: u64, what: &str) -> Result<StrRead> {
        let len = self.u64(what)?;
        if len > cap {
            return Err(self.err(format!(
                "{what} claims {len} bytes, more than the {cap}-byte limit (corrupt or hostile file)"
            )));
        }
        self.need(len, what)?;
        if len > keep {
            self.skip(len, what)?;
            return Ok(StrRead::Skipped(len));
        }
        // `len <= keep` (at most 64 KiB), so reading it allocates at most that much.
        let mut buf = Vec::new();
        let read = (&mut self.inner)
            .take(len)
            .read_to_end(&mut buf)
            .map_err(|e| self.io_err(&e, what))?;
        self.pos += read as u64;
        if (read as u64) < len {
            return Err(self.err(format!("file ends inside {what} (truncated?)")));
        }
        Ok(StrRead::Kept(String::from_utf8_lossy(&buf).into_owned()))
    }

    fn scalar(&mut self, ty: u32, what: &str) -> Result<GgufValue> {
        Ok(match ty {
            vt::U8 => GgufValue::Uint(u64::from(self.bytes::<1>(what)?[0])),
            vt::I8 => GgufValue::Int(i64::from(i8::from_le_bytes(self.bytes::<1>(what)?))),
            vt::U16 => GgufValue::Uint(u64::from(u16::from_le_bytes(self.bytes::<2>(what)?))),
            vt::I16 => GgufValue::Int(i64::from(i16::from_le_bytes(self.bytes::<2>(what)?))),
            vt::U32 => GgufValue::Uint(u64::from(self.u32(what)?)),
            vt::I32 => GgufValue::Int(i64::from(i32::from_le_bytes(self.bytes::<4>(what)?))),
            vt::F32 => GgufValue::Float(f64::from(f32::from_le_bytes(self.bytes::<4>(what)?))),
            vt::BOOL => GgufValue::Bool(self.bytes::<1>(what)?[0] != 0),
            vt::U64 => GgufValue::Uint(self.u64(what)?),
            vt::I64 => GgufValue::Int(i64::from_le_bytes(self.bytes::<8>(what)?)),
            vt::F64 => GgufValue::Float(f64::from_le_bytes(self.bytes::<8>(what)?)),
            other => return Err(self.err(format!("unknown metadata value type {other} in {what}"))),
        })
    }

    fn value(&mut self, ty: u32, depth: u32, what: &str) -> Result<GgufValue> {
        match ty {
            vt::STRING => Ok(
                match self.string(MAX_STRING_BYTES, KEEP_STRING_BYTES, what)? {
                    StrRead::Kept(s) => GgufValue::Str(s),
                    StrRead::Skipped(len) => GgufValue::LongStr { len },
                },
            ),
            vt::ARRAY => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(format!(
                        "{what}: arrays nested deeper than {MAX_ARRAY_DEPTH}"
                    )));
                }
                let elem_type = self.u32(what)?;
                let len = self.u64(what)?;
                if len > MAX_ARRAY_LEN {
                    return Err(self.err(format!(
                        "{what}: array claims {len} elements, more than the {MAX_ARRAY_LEN} limit"
                    )));
                }
                let integer = matches!(
                    elem_type,
                    vt::U8 | vt::I8 | vt::U16 | vt::I16 | vt::U32 | vt::I32 | vt::U64 | vt::I64
                );
                if integer
                    && len <= KEEP_ARRAY_LEN
                    && self.kept_ints.saturating_add(len) <= MAX_KEPT_INTS
                {
                    self.kept_ints += len;
                    let mut values = Vec::new();
                    for _ in 0..len {
                        let v = match self.scalar(elem_type, what)? {
                            GgufValue::Uint(u) => i64::try_from(u).unwrap_or(i64::MAX),
                            GgufValue::Int(i) => i,
                            _ => 0,
                        };
                        values.push(v);
                    }
                    return Ok(GgufValue::Ints(values));
                }
                if let Some(size) = scalar_size(elem_type) {
                    let total = len
                        .checked_mul(size)
                        .ok_or_else(|| self.err(format!("{what}: array size overflows")))?;
                    self.skip(total, what)?;
                } else if elem_type == vt::STRING {
                    for _ in 0..len {
                        let _skipped = self.string(MAX_STRING_BYTES, 0, what)?;
                    }
                } else if elem_type == vt::ARRAY {
                    for _ in 0..len {
                        // Nested arrays are walked with the same caps and then dropped.
                        self.value(vt::ARRAY, depth + 1, what)?;
                    }
                } else {
                    return Err(self.err(format!("{what}: unknown array element type {elem_type}")));
                }
                Ok(GgufValue::Array { elem_type, len })
            }
            _ => self.scalar(ty, what),
        }
    }

    fn count(&mut self, what: &str, cap: u64) -> Result<u64> {
        let n = self.u64(what)?;
        if n > cap {
            return Err(self.err(format!(
                "{what} is {n}, more than the {cap} limit (corrupt or hostile file)"
            )));
        }
        Ok(n)
    }

    fn parse(mut self) -> Result<GgufInfo> {
        let magic = self.bytes::<4>("the magic number")?;
        if &magic != b"GGUF" {
            return Err(Error::Gguf {
                offset: 0,
                reason: format!(
                    "bad magic {magic:02x?}, expected \"GGUF\": not a GGUF model file \
                     (an Ollama blob, safetensors or GGML file?)"
                ),
            });
        }
        let version = self.u32("the version")?;
        match version {
            2 | 3 => {}
            1 => return Err(self.err(
                "GGUF version 1 is not supported: re-convert the model with a current llama.cpp",
            )),
            v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
                return Err(self.err("big-endian GGUF files are not supported"))
            }
            v => return Err(self.err(format!("unknown GGUF version {v} (supported: 2, 3)"))),
        }
        let tensor_count = self.count("tensor_count", MAX_TENSORS)?;
        let kv_count = self.count("metadata kv_count", MAX_KV)?;

        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = match self.string(MAX_KEY_BYTES, MAX_KEY_BYTES, "a metadata key")? {
                StrRead::Kept(key) => key,
                StrRead::Skipped(_) => return Err(self.err("metadata key too long")),
            };
            let ty = self.u32("a metadata value type")?;
            let value = self.value(ty, 0, &format!("metadata `{key}`"))?;
            metadata.insert(key, value);
        }

        let mut tensors = Vec::new();
        for _ in 0..tensor_count {
            let name = match self.string(MAX_KEY_BYTES, MAX_KEY_BYTES, "a tensor name")? {
                StrRead::Kept(name) => name,
                StrRead::Skipped(_) => return Err(self.err("tensor name too long")),
            };
            let n_dims = self.u32("tensor dimension count")?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(self.err(format!(
                    "tensor `{name}` has {n_dims} dimensions (1 to {MAX_DIMS} allowed)"
                )));
            }
            let mut dims = Vec::with_capacity(MAX_DIMS as usize);
            for _ in 0..n_dims {
                dims.push(self.u64("tensor dimensions")?);
            }
            let ggml_type = GgmlType(self.u32("tensor type")?);
            let offset = self.u64("tensor offset")?;
            let size_bytes = self.tensor_bytes(&name, &dims, ggml_type)?;
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
                size_bytes,
            });
        }
        Ok(GgufInfo {
            version,
            metadata,
            tensors,
            header_bytes: self.pos,
        })
    }

    fn tensor_bytes(&self, name: &str, dims: &[u64], ty: GgmlType) -> Result<u64> {
        let (block, block_bytes) = ty.block().ok_or_else(|| {
            self.err(format!(
                "tensor `{name}` has ggml type {} which this version cannot size",
                ty.0
            ))
        })?;
        // ggml keeps element counts in int64: anything larger is corrupt.
        let limit = i64::MAX.unsigned_abs();
        let elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= limit)
            .ok_or_else(|| self.err(format!("tensor `{name}` dimensions {dims:?} overflow")))?;
        let row = dims.first().copied().unwrap_or(0);
        if row % block != 0 {
            return Err(self.err(format!(
                "tensor `{name}`: first dimension {row} is not a multiple of the {} block size {block}",
                ty.name().unwrap_or("?")
            )));
        }
        (elements / block)
            .checked_mul(block_bytes)
            .ok_or_else(|| self.err(format!("tensor `{name}` size overflows")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_table_spot_checks() {
        assert_eq!(GgmlType(12).block(), Some((256, 144)));
        assert_eq!(GgmlType(12).name(), Some("Q4_K"));
        assert_eq!(GgmlType(8).block(), Some((32, 34)));
        assert_eq!(GgmlType(4).block(), None);
        assert_eq!(GgmlType(9999).name(), None);
    }

    #[test]
    fn layer_prefix() {
        let t = |name: &str| TensorInfo {
            name: name.to_owned(),
            dims: vec![1],
            ggml_type: GgmlType(0),
            offset: 0,
            size_bytes: 4,
        };
        assert_eq!(t("blk.12.attn_q.weight").layer(), Some(12));
        assert_eq!(t("blk.x.attn_q.weight").layer(), None);
        assert_eq!(t("v.blk.1.attn_q.weight").layer(), None);
        assert_eq!(t("output.weight").layer(), None);
    }
}
