//! Hostile GGUF headers: lengths that reach past the file, headers that would take days
//! to walk, FIFOs and devices as paths, and property tests over arbitrary bytes and
//! arbitrary-but-structured headers.

use std::io::Read;

use proptest::prelude::*;
use vramroute_alloc::{parse_gguf, Error, GgufInfo, MAX_HEADER_BYTES, MAX_KEPT_INTS};

/// GGUF value type ids.
const STRING: u32 = 8;
const ARRAY: u32 = 9;
const U8: u32 = 0;
const U32: u32 = 4;

/// A little-endian GGUF v3 header builder.
#[derive(Default)]
struct Header(Vec<u8>);

impl Header {
    fn new(tensors: u64, kvs: u64) -> Header {
        let mut h = Header::default();
        h.0.extend_from_slice(b"GGUF");
        h.u32(3).u64(tensors).u64(kvs);
        h
    }
    fn u32(&mut self, v: u32) -> &mut Header {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Header {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Header {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
}

/// One string of the days-long array: its length prefix and 16 MiB of content.
const STRIDE: u64 = 8 + (1 << 24);

/// A header whose one metadata value is an array of 2^24 strings of 16 MiB each:
/// within every per-item cap, it claims 256 TiB. Returned up to the first string's
/// length prefix; each further string starts [`STRIDE`] bytes after the previous one.
fn days_long_header() -> Vec<u8> {
    let mut h = Header::new(0, 1);
    h.str("tokenizer.ggml.tokens")
        .u32(ARRAY)
        .u32(STRING)
        .u64(1 << 24)
        .u64(1 << 24);
    h.0
}

/// The strings after the header, forever: a length prefix of 16 MiB every [`STRIDE`]
/// bytes, zeros in between.
struct Strings {
    at: u64,
}

impl Read for Strings {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // The first prefix is in the header; content starts here.
        let in_stride = self.at % STRIDE;
        let n = if in_stride < STRIDE - 8 {
            let n = buf
                .len()
                .min(usize::try_from(STRIDE - 8 - in_stride).unwrap_or(usize::MAX));
            buf[..n].fill(0);
            n
        } else {
            let prefix = (1u64 << 24).to_le_bytes();
            let from = usize::try_from(in_stride - (STRIDE - 8)).expect("under 8");
            let n = buf.len().min(8 - from);
            buf[..n].copy_from_slice(&prefix[from..from + n]);
            n
        };
        self.at += n as u64;
        Ok(n)
    }
}

#[test]
fn a_sparse_file_claiming_terabytes_is_refused_at_the_header_cap() {
    // Before the header cap, this 64 GiB sparse file (no disk blocks) was walked to its
    // end, 16 MiB at a time; a larger one took days. Now the walk stops at the cap.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse.gguf");
    let file = std::fs::File::create(&path).unwrap();
    let header = days_long_header();
    std::io::Write::write_all(&mut &file, &header).unwrap();
    // The next 63 strings' length prefixes; the rest of the 64 GiB is a hole.
    for i in 1..64u64 {
        let at = header.len() as u64 + i * STRIDE - 8;
        std::os::unix::fs::FileExt::write_at(&file, &(1u64 << 24).to_le_bytes(), at).unwrap();
    }
    file.set_len(64 << 30).unwrap();
    let err = GgufInfo::from_path(&path).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, Error::Gguf { offset, .. } if offset <= MAX_HEADER_BYTES),
        "{text}"
    );
    assert!(
        text.contains(&format!("past the {MAX_HEADER_BYTES}-byte limit")),
        "{text}"
    );
}

#[test]
fn a_length_past_the_end_of_the_file_is_refused_before_it_is_read() {
    let mut bytes = days_long_header();
    bytes.extend_from_slice(&[0; 100]);
    let err = parse_gguf(&bytes).unwrap_err().to_string();
    assert!(
        err.contains("needs 16777216 bytes but only 100 are left in the file"),
        "{err}"
    );
}

#[test]
fn an_endless_reader_stops_at_the_header_cap() {
    // The same header followed by zeros forever (a pipe, a device): the reader gives up
    // after at most MAX_HEADER_BYTES instead of reading forever.
    let mut counted = Counted {
        inner: std::io::Cursor::new(days_long_header()).chain(Strings { at: 0 }),
        read: 0,
    };
    let err = GgufInfo::from_reader(&mut counted).unwrap_err().to_string();
    assert!(err.contains("byte limit"), "{err}");
    assert!(
        counted.read <= MAX_HEADER_BYTES,
        "{} bytes read",
        counted.read
    );
}

struct Counted<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

#[test]
fn kept_integers_are_capped_across_arrays() {
    // 300 arrays of 4096 u8 each: 1.2 MiB of file that would keep 1.2M i64s (9.4 MiB).
    let arrays = 300u64;
    let mut h = Header::new(0, arrays);
    for i in 0..arrays {
        h.str(&format!("a{i}")).u32(ARRAY).u32(U8).u64(4096);
        h.0.extend(std::iter::repeat_n(7u8, 4096));
    }
    let info = parse_gguf(&h.0).unwrap();
    let kept: u64 = info
        .metadata
        .values()
        .map(|v| match v {
            vramroute_alloc::GgufValue::Ints(values) => values.len() as u64,
            _ => 0,
        })
        .sum();
    assert_eq!(kept, MAX_KEPT_INTS / 4096 * 4096);
    assert_eq!(info.metadata.len(), 300, "every array is still listed");
}

#[test]
fn a_fifo_or_a_device_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.gguf");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo (coreutils) must be installed to run this test");
    assert!(status.success(), "mkfifo failed");
    // Opening a FIFO for reading blocks until a writer comes; this must not. The
    // channel timeout only keeps a regression from hanging the suite.
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(GgufInfo::from_path(&path).map_err(|e| e.to_string()));
    });
    let err = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("GgufInfo::from_path blocked on a FIFO")
        .unwrap_err();
    assert!(
        err.contains("is a FIFO (named pipe), not a regular file"),
        "{err}"
    );
    assert!(err.contains("model.gguf"), "{err}");

    let err = GgufInfo::from_path("/dev/zero").unwrap_err().to_string();
    assert!(err.contains("/dev/zero is a character device"), "{err}");
}

/// One metadata value, structured but hostile: claimed lengths may exceed the data.
#[derive(Debug, Clone)]
enum Value {
    Scalar(u32, Vec<u8>),
    Str(u64, Vec<u8>),
    Array(u32, u64, Vec<u8>),
    Nested(u64, Vec<(u32, u64)>),
}

fn value() -> impl Strategy<Value = Value> {
    let claimed = prop_oneof![0u64..64, Just(1 << 24), Just(u64::MAX), any::<u64>()];
    prop_oneof![
        (0u32..14, proptest::collection::vec(any::<u8>(), 0..9))
            .prop_map(|(t, b)| Value::Scalar(t, b)),
        (
            claimed.clone(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(n, b)| Value::Str(n, b)),
        (
            0u32..14,
            claimed.clone(),
            proptest::collection::vec(any::<u8>(), 0..256)
        )
            .prop_map(|(t, n, b)| Value::Array(t, n, b)),
        (
            claimed,
            proptest::collection::vec(
                (
                    prop_oneof![Just(U32), Just(STRING), Just(ARRAY), 0u32..14],
                    0u64..8
                ),
                0..8
            )
        )
            .prop_map(|(n, inner)| Value::Nested(n, inner)),
    ]
}

fn tensor() -> impl Strategy<Value = (String, Vec<u64>, u32, u64)> {
    (
        "[a-z.0-9]{0,24}",
        proptest::collection::vec(prop_oneof![1u64..4096, any::<u64>()], 0..6),
        prop_oneof![0u32..40, any::<u32>()],
        any::<u64>(),
    )
}

fn encode(
    kvs: &[(String, Value)],
    tensors: &[(String, Vec<u64>, u32, u64)],
    counts: Option<(u64, u64)>,
) -> Vec<u8> {
    let (nt, nk) = counts.unwrap_or((tensors.len() as u64, kvs.len() as u64));
    let mut h = Header::new(nt, nk);
    for (key, v) in kvs {
        h.str(key);
        match v {
            Value::Scalar(t, b) => {
                h.u32(*t);
                h.0.extend_from_slice(b);
            }
            Value::Str(n, b) => {
                h.u32(STRING).u64(*n);
                h.0.extend_from_slice(b);
            }
            Value::Array(t, n, b) => {
                h.u32(ARRAY).u32(*t).u64(*n);
                h.0.extend_from_slice(b);
            }
            Value::Nested(n, inner) => {
                h.u32(ARRAY).u32(ARRAY).u64(*n);
                for (t, len) in inner {
                    h.u32(*t).u64(*len);
                    h.0.extend(std::iter::repeat_n(
                        0u8,
                        usize::try_from(*len).unwrap_or(0) * 8,
                    ));
                }
            }
        }
    }
    for (name, dims, ty, offset) in tensors {
        h.str(name).u32(dims.len() as u32);
        for d in dims {
            h.u64(*d);
        }
        h.u32(*ty).u64(*offset);
    }
    h.0
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..2048), magic in any::<bool>()) {
        if magic && bytes.len() >= 8 {
            bytes[..4].copy_from_slice(b"GGUF");
            bytes[4..8].copy_from_slice(&3u32.to_le_bytes());
        }
        if let Ok(info) = parse_gguf(&bytes) {
            prop_assert!(info.header_bytes <= bytes.len() as u64);
        }
    }

    #[test]
    fn structured_hostile_headers_never_panic_or_overrun(
        kvs in proptest::collection::vec(("[a-z._]{1,16}", value()), 0..8),
        tensors in proptest::collection::vec(tensor(), 0..6),
        counts in proptest::option::of((prop_oneof![0u64..16, any::<u64>()], prop_oneof![0u64..16, any::<u64>()])),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = encode(&kvs, &tensors, counts);
        if truncate && !bytes.is_empty() {
            let at = cut.index(bytes.len());
            bytes.truncate(at);
        }
        match parse_gguf(&bytes) {
            Ok(info) => {
                prop_assert!(info.header_bytes <= bytes.len() as u64);
                prop_assert!(info.tensors.len() as u64 <= bytes.len() as u64);
            }
            Err(Error::Gguf { offset, .. }) => prop_assert!(offset <= bytes.len() as u64),
            Err(other) => prop_assert!(false, "unexpected error kind: {other}"),
        }
    }
}
