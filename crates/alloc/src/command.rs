//! Command lines (`rpc-server`, `llama-server`) as data, printable as a shell line.

use std::fmt;

use serde::Serialize;

/// A program invocation: environment assignments, program and arguments.
///
/// `Display` renders a copy-pasteable POSIX shell line (`VAR=value program arg ...`),
/// single-quoting any word that contains characters outside a conservative safe set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ShellCommand {
    /// Environment variables to set for the program, in order.
    pub env: Vec<(String, String)>,
    /// The program (`ggml-rpc-server`, `llama-server`).
    pub program: String,
    /// Its arguments, unquoted.
    pub args: Vec<String>,
}

/// An `rpc-server` invocation (see [`ShellCommand`]).
pub type RpcServerCommand = ShellCommand;

/// The RPC server binary today's llama.cpp builds (`ggml-rpc-server`); the default of
/// every command builder that takes a binary name.
pub const RPC_SERVER_BINARY: &str = "ggml-rpc-server";

/// The RPC server binary of older llama.cpp builds (and of many guides): `rpc-server`.
/// Current builds no longer produce it.
pub const LEGACY_RPC_SERVER_BINARY: &str = "rpc-server";

/// Which RPC server binary to name in printed commands, given the names the caller found
/// on `PATH` (finding them is I/O, so it is the caller's job): `ggml-rpc-server` when
/// present, else `rpc-server` when present, else `None` (the caller then prints
/// [`RPC_SERVER_BINARY`] and says it was not found). Names are compared by file name, so
/// full paths (`/usr/local/bin/rpc-server`) work too.
///
/// ```
/// use vramroute_alloc::{pick_rpc_server_binary, RPC_SERVER_BINARY};
/// assert_eq!(pick_rpc_server_binary(&["/opt/llama/bin/rpc-server"]), Some("rpc-server"));
/// assert_eq!(pick_rpc_server_binary(&["rpc-server", "ggml-rpc-server"]), Some("ggml-rpc-server"));
/// assert_eq!(pick_rpc_server_binary::<&str>(&[]).unwrap_or(RPC_SERVER_BINARY), "ggml-rpc-server");
/// ```
pub fn pick_rpc_server_binary<S: AsRef<str>>(found_on_path: &[S]) -> Option<&'static str> {
    let has = |name: &str| {
        found_on_path.iter().any(|f| {
            let f = f.as_ref();
            f.rsplit(['/', '\\']).next() == Some(name)
        })
    };
    [RPC_SERVER_BINARY, LEGACY_RPC_SERVER_BINARY]
        .into_iter()
        .find(|name| has(name))
}

impl ShellCommand {
    /// A command with no environment and no arguments.
    pub fn new(program: impl Into<String>) -> Self {
        ShellCommand {
            env: Vec::new(),
            program: program.into(),
            args: Vec::new(),
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds one environment assignment.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The value following `flag` in the arguments, if present (`-p`, `--port`, ...).
    pub fn flag_value(&self, flag: &str) -> Option<&str> {
        self.args
            .iter()
            .position(|a| a == flag)
            .and_then(|i| self.args.get(i + 1))
            .map(String::as_str)
    }
}

/// Quotes `word` for a POSIX shell when it contains anything but
/// `A-Z a-z 0-9 _ - . / : , = @ % +`.
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:,=@%+".contains(&b));
    if safe {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

impl fmt::Display for ShellCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (key, value) in &self.env {
            write!(f, "{}={} ", key, shell_quote(value))?;
        }
        f.write_str(&shell_quote(&self.program))?;
        for arg in &self.args {
            write!(f, " {}", shell_quote(arg))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(shell_quote("CPU,CUDA0"), "CPU,CUDA0");
        assert_eq!(shell_quote("10.0.0.1:50052"), "10.0.0.1:50052");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("my model.gguf"), "'my model.gguf'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn display_puts_env_first() {
        let cmd = ShellCommand::new("rpc-server")
            .env("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
            .arg("--host")
            .arg("0.0.0.0");
        assert_eq!(
            cmd.to_string(),
            "CUDA_DEVICE_ORDER=PCI_BUS_ID rpc-server --host 0.0.0.0"
        );
        assert_eq!(cmd.flag_value("--host"), Some("0.0.0.0"));
        assert_eq!(cmd.flag_value("--port"), None);
    }
}
