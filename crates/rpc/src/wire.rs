//! The bytes of llama.cpp's RPC protocol that a probe uses, as pure functions.
//!
//! Request: `u8 cmd | u64 size | size bytes of payload`; reply: `u64 size | size bytes`.
//! Integers are little-endian, structs are packed (`#pragma pack(1)` in `ggml-rpc.cpp`).
//!
//! | command             | id | request payload           | reply payload                            |
//! |---------------------|----|---------------------------|------------------------------------------|
//! | `HELLO`             | 14 | 24 capability bytes       | `u8 major, minor, patch, pad`, 24 caps   |
//! | `DEVICE_COUNT`      | 15 | (empty)                   | `u32 count`                              |
//! | `GET_DEVICE_MEMORY` | 11 | `u32 device`              | `u64 free, u64 total` (bytes)            |
//!
//! HELLO must be the first command of a connection; the server closes the connection when
//! it is not, when its request size is not exactly 24, or when a device index is out of
//! range. Before the RDMA transport (llama.cpp PR #20590, April 2026) HELLO had an empty
//! request and a 3-byte reply (`major, minor, patch`): [`LEGACY_HELLO_REPLY_BYTES`].
//! Forks (ik_llama.cpp, halo-hybrid, ...) append fields to the 28-byte reply; the version
//! stays in its first three bytes, so a longer reply is accepted ([`Hello::extra_bytes`]).

use crate::Error;

/// `RPC_CMD_GET_DEVICE_MEMORY`.
pub const CMD_GET_DEVICE_MEMORY: u8 = 11;
/// `RPC_CMD_HELLO` (pinned to 14 by a `static_assert` in `ggml-rpc.cpp`).
pub const CMD_HELLO: u8 = 14;
/// `RPC_CMD_DEVICE_COUNT`.
pub const CMD_DEVICE_COUNT: u8 = 15;

/// `RPC_CONN_CAPS_SIZE`: the transport capabilities carried by HELLO (zeros: plain TCP).
pub const CAPS_BYTES: usize = 24;
/// HELLO reply of protocol 4.x–7.x: version (3 bytes), padding, capabilities.
pub const HELLO_REPLY_BYTES: usize = 4 + CAPS_BYTES;
/// HELLO reply of servers from before the capability exchange (protocol 2.x–3.x).
pub const LEGACY_HELLO_REPLY_BYTES: usize = 3;
/// `DEVICE_COUNT` reply: one `u32`.
pub const DEVICE_COUNT_REPLY_BYTES: usize = 4;
/// `GET_DEVICE_MEMORY` reply: two `u64`.
pub const DEVICE_MEMORY_REPLY_BYTES: usize = 16;
/// The largest reply size a probe accepts; anything above is refused before it is read
/// (the replies it asks for are at most 28 bytes).
pub const MAX_REPLY_BYTES: u64 = 64 * 1024;

/// Protocol majors whose HELLO, `DEVICE_COUNT` and `GET_DEVICE_MEMORY` this crate has
/// checked against llama.cpp's source: 5 (2026-08, e.g. 5.1.0–5.3.0), 6 (6.0.x) and 7
/// (7.0.x, commit 0c1e570, 2026-11). Another major is reported as unknown, not as dead.
pub const KNOWN_MAJORS: &[u8] = &[5, 6, 7];

/// One request: `cmd`, the payload's length as a little-endian `u64`, the payload.
pub fn request(cmd: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + payload.len());
    out.push(cmd);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// HELLO with all-zero capabilities (no RDMA upgrade): 33 bytes.
pub fn hello_request() -> Vec<u8> {
    request(CMD_HELLO, &[0; CAPS_BYTES])
}

/// HELLO as servers before the capability exchange expect it (empty payload): 9 bytes.
pub fn legacy_hello_request() -> Vec<u8> {
    request(CMD_HELLO, &[])
}

/// `DEVICE_COUNT` (empty payload): 9 bytes.
pub fn device_count_request() -> Vec<u8> {
    request(CMD_DEVICE_COUNT, &[])
}

/// `GET_DEVICE_MEMORY` for `device`: 13 bytes.
pub fn device_memory_request(device: u32) -> Vec<u8> {
    request(CMD_GET_DEVICE_MEMORY, &device.to_le_bytes())
}

/// Check a reply's announced size before anything is allocated for it: at most
/// [`MAX_REPLY_BYTES`], and exactly `expected` when given.
pub fn check_reply_size(
    what: &'static str,
    size: u64,
    expected: Option<usize>,
) -> crate::Result<usize> {
    if size > MAX_REPLY_BYTES {
        return Err(Error::TooLarge {
            what,
            size,
            limit: MAX_REPLY_BYTES,
        });
    }
    // Fits in usize: it is at most 64 KiB.
    let size = size as usize;
    match expected {
        Some(n) if n != size => Err(Error::Malformed {
            what,
            reason: format!("reply of {size} bytes, expected {n}"),
        }),
        _ => Ok(size),
    }
}

/// A protocol version read from a HELLO reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// `(major, minor, patch)`.
    pub version: (u8, u8, u8),
    /// True for the 3-byte reply of servers before the capability exchange.
    pub legacy: bool,
    /// Bytes beyond the 28 of upstream's reply: forks extend it (a port, a session id, an
    /// op count after the version); the version still comes first.
    pub extra_bytes: usize,
}

/// Parse a HELLO reply payload: 28 bytes (upstream 4.x–7.x), more (a fork's extension of
/// it), or 3 (a legacy server). Any other length is malformed.
pub fn parse_hello(payload: &[u8]) -> crate::Result<Hello> {
    let n = payload.len();
    let legacy = match n {
        LEGACY_HELLO_REPLY_BYTES => true,
        n if n >= HELLO_REPLY_BYTES => false,
        n => {
            return Err(Error::Malformed {
                what: "HELLO",
                reason: format!(
                    "reply of {n} bytes, expected {HELLO_REPLY_BYTES} \
                     ({LEGACY_HELLO_REPLY_BYTES} from servers before April 2026)"
                ),
            })
        }
    };
    Ok(Hello {
        version: (payload[0], payload[1], payload[2]),
        legacy,
        extra_bytes: n.saturating_sub(HELLO_REPLY_BYTES),
    })
}

/// Parse a `DEVICE_COUNT` reply payload.
pub fn parse_device_count(payload: &[u8]) -> crate::Result<u32> {
    let bytes: [u8; DEVICE_COUNT_REPLY_BYTES] =
        payload.try_into().map_err(|_| Error::Malformed {
            what: "DEVICE_COUNT",
            reason: format!("reply of {} bytes, expected 4", payload.len()),
        })?;
    Ok(u32::from_le_bytes(bytes))
}

/// Parse a `GET_DEVICE_MEMORY` reply payload: `(free_bytes, total_bytes)`.
pub fn parse_device_memory(payload: &[u8]) -> crate::Result<(u64, u64)> {
    if payload.len() != DEVICE_MEMORY_REPLY_BYTES {
        return Err(Error::Malformed {
            what: "GET_DEVICE_MEMORY",
            reason: format!("reply of {} bytes, expected 16", payload.len()),
        });
    }
    let mut free = [0u8; 8];
    let mut total = [0u8; 8];
    free.copy_from_slice(&payload[..8]);
    total.copy_from_slice(&payload[8..]);
    Ok((u64::from_le_bytes(free), u64::from_le_bytes(total)))
}

/// How a reply's first 8 bytes read as text, when they are printable ASCII (an HTTP
/// server or another protocol on the port): for error messages.
pub fn printable_prefix(bytes: &[u8]) -> Option<String> {
    (!bytes.is_empty() && bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' '))
        .then(|| String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_the_documented_bytes() {
        let hello = hello_request();
        assert_eq!(hello.len(), 33);
        assert_eq!(&hello[..9], &[14, 24, 0, 0, 0, 0, 0, 0, 0]);
        assert!(hello[9..].iter().all(|b| *b == 0));
        assert_eq!(legacy_hello_request(), [14, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(device_count_request(), [15, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            device_memory_request(0x0102_0304),
            [11, 4, 0, 0, 0, 0, 0, 0, 0, 4, 3, 2, 1]
        );
    }

    #[test]
    fn reply_sizes_are_checked_before_reading() {
        assert_eq!(check_reply_size("HELLO", 28, None).ok(), Some(28));
        assert_eq!(check_reply_size("HELLO", 28, Some(28)).ok(), Some(28));
        assert!(matches!(
            check_reply_size("HELLO", 1 << 60, None),
            Err(Error::TooLarge { size, .. }) if size == 1 << 60
        ));
        assert!(matches!(
            check_reply_size("HELLO", u64::MAX, Some(28)),
            Err(Error::TooLarge { .. })
        ));
        assert!(check_reply_size("HELLO", MAX_REPLY_BYTES, None).is_ok());
        assert!(check_reply_size("HELLO", MAX_REPLY_BYTES + 1, None).is_err());
        assert!(matches!(
            check_reply_size("DEVICE_COUNT", 8, Some(4)),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn hello_replies_parse_in_every_shape() {
        let mut current = [0u8; 28];
        current[..4].copy_from_slice(&[7, 0, 1, 0]);
        assert_eq!(
            parse_hello(&current).ok(),
            Some(Hello {
                version: (7, 0, 1),
                legacy: false,
                extra_bytes: 0
            })
        );
        assert_eq!(
            parse_hello(&[3, 0, 0]).ok(),
            Some(Hello {
                version: (3, 0, 0),
                legacy: true,
                extra_bytes: 0
            })
        );
        let mut fork = [0u8; 34];
        fork[..3].copy_from_slice(&[7, 4, 0]);
        assert_eq!(
            parse_hello(&fork).ok(),
            Some(Hello {
                version: (7, 4, 0),
                legacy: false,
                extra_bytes: 6
            })
        );
        assert!(parse_hello(&[5, 1]).is_err());
        assert!(parse_hello(&[5, 1, 0, 0]).is_err());
        assert!(parse_hello(&[0; 27]).is_err());
    }

    #[test]
    fn counts_and_memory_parse_little_endian() {
        assert_eq!(parse_device_count(&[2, 0, 0, 0]).ok(), Some(2));
        assert!(parse_device_count(&[2, 0, 0]).is_err());
        let mut mem = Vec::new();
        mem.extend_from_slice(&1000u64.to_le_bytes());
        mem.extend_from_slice(&(24u64 << 30).to_le_bytes());
        assert_eq!(parse_device_memory(&mem).ok(), Some((1000, 24 << 30)));
        assert!(parse_device_memory(&mem[..15]).is_err());
    }

    #[test]
    fn printable_prefixes_are_named() {
        assert_eq!(printable_prefix(b"HTTP/1.1").as_deref(), Some("HTTP/1.1"));
        assert_eq!(printable_prefix(&[0x1c, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(printable_prefix(&[]), None);
    }
}
