//! What the importer prints. A reader that leaves early (`r4j-import … | head`, or stderr piped
//! into one) closes the pipe: the rest of the output is dropped, without a panic (`print!` and
//! `eprintln!` panic on a closed pipe; Rust ignores SIGPIPE, so the write fails instead).

use std::io::Write;

/// One report line on stderr, prefixed `r4j-import: `. A failed write is dropped: the report
/// has nowhere else to go.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "r4j-import: {line}");
}

/// The generated manifest (or the usage) on stdout. A closed stdout ends the output quietly:
/// whoever closed it read what they wanted.
pub fn stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
