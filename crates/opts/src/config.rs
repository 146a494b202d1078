//! criu's configuration files: one option a line, without its leading
//! `--` (`tcp-established`, `verbosity 4`, `log-file "a name"`,
//! `ghost-limit=2M`), `#` starting a comment. Each file becomes the
//! argument list of one more getopt pass over the same options, in
//! criu's order: `/etc/criu/default.conf`, `$HOME/.criu/default.conf`,
//! `$CRIU_CONFIG_FILE`, `--config FILE`, the command line (or the RPC's
//! options), then the RPC's `config_file`. `--config` and
//! `--no-default-config` leave out the first two.
//!
//! A missing or unreadable file is skipped, as criu skips it.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use crate::Error;

/// The system-wide file.
pub const GLOBAL: &str = "/etc/criu/default.conf";
/// The user's file, below `$HOME`.
pub const USER: &str = ".criu/default.conf";
/// The environment variable naming one more file.
pub const ENV: &str = "CRIU_CONFIG_FILE";

/// Reads `path` into getopt's words, or `None` when it cannot be opened.
pub fn read(path: &Path) -> Result<Option<Vec<OsString>>, Error> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(None);
    };
    words(&bytes, path).map(Some)
}

/// The text of a configuration file (named `path` in errors) into
/// getopt's words.
pub fn words(text: &[u8], path: &Path) -> Result<Vec<OsString>, Error> {
    let mut words = Vec::new();
    for (n, line) in text.split(|&b| b == b'\n').enumerate() {
        statement(line, &mut words).map_err(|what| Error::Config {
            path: path.to_owned(),
            line: n + 1,
            what,
        })?;
    }
    Ok(words)
}

/// The files to read before the command line, in order, as criu finds
/// them: `no_default` leaves out the system's and the user's.
pub fn sources(
    no_default: bool,
    home: Option<&Path>,
    env_file: Option<&Path>,
    cmdline_file: Option<&Path>,
) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if !no_default {
        v.push(PathBuf::from(GLOBAL));
        if let Some(h) = home {
            v.push(h.join(USER));
        }
    }
    v.extend(env_file.map(Path::to_owned));
    v.extend(cmdline_file.map(Path::to_owned));
    v
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c')
}

/// One line into zero, one or two words (`--name`, then its value).
fn statement(line: &[u8], words: &mut Vec<OsString>) -> Result<(), String> {
    let start = line.iter().position(|&b| !is_space(b));
    let Some(start) = start else {
        return Ok(());
    };
    let line = &line[start..];
    if line[0] == b'#' {
        return Ok(());
    }
    // criu splits at the first space, or failing one the first tab.
    let split = line
        .iter()
        .position(|&b| b == b' ')
        .or_else(|| line.iter().position(|&b| b == b'\t'));
    let Some(split) = split else {
        words.push(dashed(line));
        return Ok(());
    };
    words.push(dashed(&line[..split]));
    let rest = &line[split + 1..];
    let Some(v) = rest.iter().position(|&b| !is_space(b)) else {
        return Ok(());
    };
    let rest = &rest[v..];
    if rest[0] == b'#' {
        return Ok(());
    }
    let (mut value, after) = if rest[0] == b'"' {
        quoted(&rest[1..])?
    } else {
        let end = rest.iter().position(|&b| is_space(b)).unwrap_or(rest.len());
        (rest[..end].to_vec(), &rest[end..])
    };
    // Anything but blanks or a comment after the value is refused.
    let tail = after
        .iter()
        .position(|&b| b == b'#')
        .map_or(after, |h| &after[..h]);
    if tail.iter().any(|&b| !is_space(b)) {
        return Err("more than one value for an option".into());
    }
    // As criu: a '#' ends the value, even inside quotes.
    if let Some(h) = value.iter().position(|&b| b == b'#') {
        value.truncate(h);
    }
    words.push(OsString::from_vec(value));
    Ok(())
}

/// A value that opened with a quote: up to the next unescaped quote,
/// `\"` standing for a quote. Returns the value and what follows it.
fn quoted(s: &[u8]) -> Result<(Vec<u8>, &[u8]), String> {
    if s.is_empty() {
        return Err("a lone quote as a value".into());
    }
    let mut value = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' if s.get(i + 1) == Some(&b'"') => {
                value.push(b'"');
                i += 2;
            }
            b'"' => return Ok((value, &s[i + 1..])),
            b => {
                value.push(b);
                i += 1;
            }
        }
    }
    Err("a quoted value without its closing quote".into())
}

fn dashed(name: &[u8]) -> OsString {
    let mut w = b"--".to_vec();
    w.extend_from_slice(name);
    OsString::from_vec(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Result<Vec<String>, String> {
        let mut w = Vec::new();
        for line in text.lines() {
            statement(line.as_bytes(), &mut w)?;
        }
        Ok(w.into_iter().map(|s| s.into_string().unwrap()).collect())
    }

    #[test]
    fn statements() {
        assert_eq!(
            words(
                "# a comment\n\n  tcp-established\nverbosity 4\nlog-file \"my log\"  # why\n\
                 ghost-limit=2M\nlsm-profile \"a\\\"b\"\nroot\t/x\nshell-job # comment\n\
                 empty \"\"\n"
            )
            .unwrap(),
            [
                "--tcp-established",
                "--verbosity",
                "4",
                "--log-file",
                "my log",
                "--ghost-limit=2M",
                "--lsm-profile",
                "a\"b",
                "--root",
                "/x",
                "--shell-job",
                "--empty",
                ""
            ]
        );
        // As criu, a '#' cuts a value, quoted or not.
        assert_eq!(words("a b#c").unwrap(), ["--a", "b"]);
        assert_eq!(words("a \"b#c\"").unwrap(), ["--a", "b"]);
    }

    #[test]
    fn malformed_lines_are_refused() {
        assert!(words("verbosity 4 5").is_err());
        assert!(words("log-file \"open").is_err());
        assert!(words("log-file \"").is_err());
        assert!(words("log-file \"a\" b").is_err());
    }

    #[test]
    fn sources_in_criu_order() {
        let home = Path::new("/home/u");
        assert_eq!(
            sources(
                false,
                Some(home),
                Some(Path::new("/env")),
                Some(Path::new("/c"))
            ),
            [
                PathBuf::from(GLOBAL),
                home.join(USER),
                "/env".into(),
                "/c".into()
            ]
        );
        assert_eq!(
            sources(true, Some(home), None, Some(Path::new("/c"))),
            [PathBuf::from("/c")]
        );
    }
}
