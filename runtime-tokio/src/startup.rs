//! How the binaries start and fail: log colour only where a person reads it, and startup
//! errors that say what was being done with what, on one line, without a backtrace.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;

/// Log through tracing to stderr, filtered by `RUST_LOG` or else `default_filter`. Colour
/// codes only when stderr is a terminal and `NO_COLOR` is unset (no-color.org), so a log
/// file holds plain text.
pub fn init_logging(default_filter: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into()),
        )
        .with_ansi(colour_wanted(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR")))
        .with_writer(std::io::stderr)
        .init();
}

/// Whether to colour: on a terminal, unless `NO_COLOR` is set to anything non-empty.
fn colour_wanted(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// An IO error as a short phrase ("address in use"), without Rust's "(os error 98)".
#[must_use]
pub fn io_reason(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let phrase = match error.kind() {
        ErrorKind::AddrInUse => "address in use",
        ErrorKind::AddrNotAvailable => "address not available on this host",
        ErrorKind::PermissionDenied => "permission denied",
        ErrorKind::NotFound => "no such file or directory",
        ErrorKind::AlreadyExists => "already exists",
        ErrorKind::StorageFull => "no space left on device",
        ErrorKind::ReadOnlyFilesystem => "read-only file system",
        _ => {
            let text = error.to_string();
            return match text.find(" (os error") {
                Some(cut) => text[..cut].to_owned(),
                None => text,
            };
        }
    };
    phrase.to_owned()
}

/// The error for a listener that could not be bound.
#[must_use]
pub fn listen_error(addr: SocketAddr, error: &std::io::Error) -> anyhow::Error {
    anyhow::anyhow!("cannot listen on {addr}: {}", io_reason(error))
}

/// The process's exit: on an error, one line `program: what failed: why` on stderr and
/// status 1. The backtrace anyhow may have captured (RUST_BACKTRACE is often set for
/// other reasons) is printed only with `KEEL_BACKTRACE=1`.
#[must_use]
pub fn exit_code(program: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{program}: {error:#}");
            if std::env::var_os("KEEL_BACKTRACE").is_some_and(|v| v == "1") {
                eprintln!("{}", error.backtrace());
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_wanted(true, None));
        assert!(!colour_wanted(false, None));
        assert!(!colour_wanted(true, Some("1".into())));
        assert!(colour_wanted(true, Some("".into())));
    }

    #[test]
    fn io_errors_read_as_short_phrases() {
        let in_use = std::io::Error::from_raw_os_error(98);
        let addr: SocketAddr = "0.0.0.0:10911".parse().unwrap();
        assert_eq!(listen_error(addr, &in_use).to_string(), "cannot listen on 0.0.0.0:10911: address in use");
        let other = std::io::Error::from_raw_os_error(5);
        assert_eq!(io_reason(&other), "Input/output error");
    }
}
