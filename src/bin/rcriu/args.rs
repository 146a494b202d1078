//! criu's verbosity options, which clap cannot express: `-v` (one more),
//! `-vv...` (one more each), `-vN` (level N) and `--verbosity[=N]`.

use std::ffi::OsString;

use rcriu::logging::DEFAULT_VERBOSITY;

/// Takes the verbosity options out of `argv`, returning the level and the
/// remaining arguments for clap.
pub fn take_verbosity(
    argv: impl IntoIterator<Item = OsString>,
) -> Result<(u8, Vec<OsString>), String> {
    let mut level = DEFAULT_VERBOSITY;
    let mut rest = Vec::new();
    let mut past_separator = false;
    for arg in argv {
        if past_separator {
            rest.push(arg);
            continue;
        }
        let Some(s) = arg.to_str() else {
            rest.push(arg);
            continue;
        };
        if s == "--" {
            past_separator = true;
            rest.push(arg);
        } else if s == "--verbosity" {
            level = level.saturating_add(1);
        } else if let Some(n) = s.strip_prefix("--verbosity=") {
            level = parse_level(n)?;
        } else if let Some(v) = s.strip_prefix("-v").filter(|v| !v.starts_with('-')) {
            if v.is_empty() || v.bytes().all(|b| b == b'v') {
                level = level.saturating_add(u8::try_from(v.len() + 1).unwrap_or(u8::MAX));
            } else {
                level = parse_level(v)?;
            }
        } else {
            rest.push(arg);
        }
    }
    Ok((level, rest))
}

fn parse_level(s: &str) -> Result<u8, String> {
    s.parse::<u8>()
        .map_err(|_| format!("bad verbosity level {s:?} (expected a number, as in -v4)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> (u8, Vec<String>) {
        let (level, rest) = take_verbosity(args.iter().map(OsString::from)).unwrap();
        (
            level,
            rest.into_iter().map(|a| a.into_string().unwrap()).collect(),
        )
    }

    #[test]
    fn criu_forms() {
        assert_eq!(run(&["rcriu", "dump"]).0, 2);
        assert_eq!(run(&["rcriu", "-v4", "dump"]).0, 4);
        assert_eq!(run(&["rcriu", "dump", "-v0"]).0, 0);
        assert_eq!(run(&["rcriu", "-v", "dump"]).0, 3);
        assert_eq!(run(&["rcriu", "-vv", "dump"]).0, 4);
        assert_eq!(run(&["rcriu", "--verbosity=1", "dump"]).0, 1);
        assert_eq!(
            run(&["rcriu", "-v4", "dump", "-t", "5"]).1,
            ["rcriu", "dump", "-t", "5"]
        );
        assert!(take_verbosity(["rcriu", "-vx"].iter().map(OsString::from)).is_err());
    }
}
