//! The Redis password kept out of the URL (and so out of the command line, `ps` and unit
//! files): a password file, else `REDIS_PASSWORD`, joined to the URL by the registry's
//! `url_with_password`. Included by both binaries with `#[path]`.

use std::path::Path;

/// Largest password file read (a password, not a document).
const MAX_PASSWORD_FILE_BYTES: u64 = 4096;

/// `url` with the password from `file` (one line; a trailing newline is dropped) or, when
/// no file is given, from `REDIS_PASSWORD` in the environment; `url` unchanged when
/// neither is set. Errors name the file and never the password.
pub(crate) fn join_redis_password(url: String, file: Option<&Path>) -> Result<String, String> {
    let password = match file {
        Some(path) => {
            let text = vramroute_probe::local_file::read_local_text(
                path,
                MAX_PASSWORD_FILE_BYTES,
                "Redis password file",
            )
            .map_err(|e| format!("--redis-password-file: {e}"))?;
            let pw = text.trim_end_matches(['\n', '\r']).to_owned();
            if pw.is_empty() {
                return Err(format!(
                    "--redis-password-file: {} is empty",
                    path.display()
                ));
            }
            pw
        }
        None => match std::env::var("REDIS_PASSWORD") {
            Ok(pw) if !pw.is_empty() => pw,
            _ => return Ok(url),
        },
    };
    vramroute_registry::url_with_password(&url, &password)
        .map_err(|e| format!("Redis password: {e}"))
}
