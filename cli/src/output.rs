//! Standard output that a reader going away does not crash.
//!
//! `println!` panics when stdout is a closed pipe (`tozai plan --json | head -1`). Output
//! goes through `outln!` and `out!` instead: a closed pipe
//! is not an error (the command still does all its work and exits with its own code, with
//! nothing more printed), and any other write failure (a full disk under `> file`) is kept
//! and reported by `main` as a failed operation, once the command has finished. Messages
//! to standard error go through `errln!`, which ignores a closed standard error.

use std::fmt;
use std::io::{self, ErrorKind, Write};
use std::sync::OnceLock;

static FAILED: OnceLock<io::Error> = OnceLock::new();

fn keep(e: io::Error) {
    if e.kind() != ErrorKind::BrokenPipe {
        let _ = FAILED.set(e);
    }
}

/// Writes to standard output (the macros' body).
pub fn write(args: fmt::Arguments) {
    if let Err(e) = io::stdout().lock().write_fmt(args) {
        keep(e);
    }
}

/// Writes `value` as pretty JSON and a newline, straight to standard output (a large plan
/// is not built as one string first).
pub fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    if let Err(e) = serde_json::to_writer_pretty(&mut out, value) {
        // A write failure is kept like any other; only a value that cannot be encoded
        // is an error of the command.
        return match e.io_error_kind() {
            Some(kind) => {
                keep(io::Error::new(kind, e));
                Ok(())
            }
            None => Err(anyhow::Error::new(e).context("cannot encode the JSON")),
        };
    }
    if let Err(e) = out.write_all(b"\n").and_then(|()| out.flush()) {
        keep(e);
    }
    Ok(())
}

/// The first write that failed other than on a closed pipe.
pub fn failure() -> Option<&'static io::Error> {
    FAILED.get()
}

/// `println!` to standard output, safe on a closed pipe (see the module documentation).
macro_rules! outln {
    () => {
        $crate::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` to standard output, safe on a closed pipe (see the module documentation).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*))
    };
}

/// Writes to standard error, ignoring a failure (there is nowhere left to report it).
pub fn write_err(args: fmt::Arguments) {
    let _ = io::stderr().lock().write_fmt(args);
}

/// `eprintln!` that a closed standard error does not turn into a panic.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::write_err(format_args!("{}\n", format_args!($($arg)*)))
    };
}
