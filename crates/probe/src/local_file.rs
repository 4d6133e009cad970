//! The one way vramroute reads a local input file (a config, a snapshot, a GGUF
//! header, a key file, a sysfs value): only regular files, never more than a cap.
//!
//! A FIFO, a socket or a character device (`/dev/zero`, a terminal) named as an input
//! would block forever on `open` or `read`, or feed bytes until memory runs out. So a
//! file is opened with `O_NONBLOCK` (opening a FIFO that way returns at once), the
//! *opened* descriptor is checked with `fstat` (no window between the check and the
//! read), and anything but a regular file is refused with an error that names the path
//! and what it is. A regular file larger than the caller's cap is refused before a byte
//! is read, and the read itself stops one byte past the cap, so a file that grows while
//! it is read cannot make it unbounded. `O_NONBLOCK` has no effect on regular files.
//!
//! Directories given as roots (`--sysfs-root`) are checked with [`check_local_dir`].

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a local input was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalFileError {
    /// The operating system refused to open or read it.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The path named as input.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// It is not a regular file (or, for a root, not a directory).
    #[error(
        "{} is {found}, not {expected}: give {expected} (reading a FIFO or device could block or never end)",
        path.display()
    )]
    WrongType {
        /// The path named as input.
        path: PathBuf,
        /// What it is (`a FIFO`, `a character device`, ...).
        found: &'static str,
        /// What was expected (`a regular file`, `a directory`).
        expected: &'static str,
    },
    /// It is larger than the cap for this kind of input.
    #[error(
        "{} is {size_bytes} bytes, more than the {max_bytes}-byte limit for {what}",
        path.display()
    )]
    TooLarge {
        /// The path named as input.
        path: PathBuf,
        /// Its size (at least this many bytes).
        size_bytes: u64,
        /// The cap.
        max_bytes: u64,
        /// What kind of input it is (`a config file`).
        what: &'static str,
    },
    /// It is not UTF-8 text.
    #[error("{} is not UTF-8 text ({what})", path.display())]
    NotText {
        /// The path named as input.
        path: PathBuf,
        /// What kind of input it is.
        what: &'static str,
    },
}

impl LocalFileError {
    /// The path this error is about.
    pub fn path(&self) -> &Path {
        match self {
            LocalFileError::Io { path, .. }
            | LocalFileError::WrongType { path, .. }
            | LocalFileError::TooLarge { path, .. }
            | LocalFileError::NotText { path, .. } => path,
        }
    }
}

fn describe(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading if, and only if, it is a regular file; returns the file
/// and its size in bytes. Never blocks on a FIFO or device (see the module doc).
///
/// # Errors
/// [`LocalFileError::Io`] when it cannot be opened, [`LocalFileError::WrongType`] when
/// it is not a regular file.
pub fn open_regular_file(path: &Path) -> Result<(File, u64), LocalFileError> {
    let io = |source| LocalFileError::Io {
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(LocalFileError::WrongType {
            path: path.to_owned(),
            found: describe(meta.file_type()),
            expected: "a regular file",
        });
    }
    Ok((file, meta.len()))
}

/// Reads the regular file at `path`, refusing it when it is larger than `max_bytes`.
/// `what` names the kind of input in the error (`a config file`).
///
/// # Errors
/// See [`open_regular_file`]; [`LocalFileError::TooLarge`] over the cap.
///
/// ```
/// use vramroute_probe::local_file::{read_local_file, LocalFileError};
/// let err = read_local_file("/dev/zero".as_ref(), 1024, "a config file").unwrap_err();
/// assert!(matches!(err, LocalFileError::WrongType { .. }), "{err}");
/// assert!(err.to_string().contains("character device"));
/// ```
pub fn read_local_file(
    path: &Path,
    max_bytes: u64,
    what: &'static str,
) -> Result<Vec<u8>, LocalFileError> {
    let (file, size_bytes) = open_regular_file(path)?;
    let too_large = |size_bytes| LocalFileError::TooLarge {
        path: path.to_owned(),
        size_bytes,
        max_bytes,
        what,
    };
    if size_bytes > max_bytes {
        return Err(too_large(size_bytes));
    }
    // The size said it fits; read one byte past the cap in case it grew meanwhile.
    let mut bytes = Vec::with_capacity(usize::try_from(size_bytes).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| LocalFileError::Io {
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// [`read_local_file`] for text: the file must also be UTF-8.
///
/// # Errors
/// See [`read_local_file`]; [`LocalFileError::NotText`] when it is not UTF-8.
pub fn read_local_text(
    path: &Path,
    max_bytes: u64,
    what: &'static str,
) -> Result<String, LocalFileError> {
    String::from_utf8(read_local_file(path, max_bytes, what)?).map_err(|_| {
        LocalFileError::NotText {
            path: path.to_owned(),
            what,
        }
    })
}

/// Checks that `path` is a directory this process can list (a root such as
/// `--sysfs-root`); a FIFO or file named as a root is refused without opening it.
///
/// # Errors
/// [`LocalFileError::Io`] when it does not exist or cannot be listed,
/// [`LocalFileError::WrongType`] when it is not a directory.
pub fn check_local_dir(path: &Path) -> Result<(), LocalFileError> {
    let io = |source| LocalFileError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_dir() {
        return Err(LocalFileError::WrongType {
            path: path.to_owned(),
            found: describe(meta.file_type()),
            expected: "a directory",
        });
    }
    std::fs::read_dir(path).map(|_| ()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_within_the_cap_is_read_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, b"check_interval: 5\n").expect("write");
        assert_eq!(
            read_local_text(&path, 18, "a config file").expect("read"),
            "check_interval: 5\n"
        );
        let err = read_local_text(&path, 17, "a config file").unwrap_err();
        assert!(matches!(
            err,
            LocalFileError::TooLarge {
                size_bytes: 18,
                max_bytes: 17,
                ..
            }
        ));
        assert!(
            err.to_string().contains("17-byte limit for a config file"),
            "{err}"
        );
    }

    #[test]
    fn a_directory_is_not_a_file_and_a_file_is_not_a_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = read_local_file(dir.path(), 10, "a snapshot").unwrap_err();
        assert!(
            err.to_string()
                .contains("is a directory, not a regular file"),
            "{err}"
        );
        check_local_dir(dir.path()).expect("a directory is a root");
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").expect("write");
        let err = check_local_dir(&file).unwrap_err();
        assert!(
            err.to_string()
                .contains("is a regular file, not a directory"),
            "{err}"
        );
        assert_eq!(err.path(), file);
        let err = check_local_dir(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, LocalFileError::Io { .. }), "{err}");
    }

    #[test]
    fn invalid_utf8_is_refused_as_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bin");
        std::fs::write(&path, [0xff, 0xfe]).expect("write");
        let err = read_local_text(&path, 10, "a config file").unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }
}
