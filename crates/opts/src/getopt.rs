//! GNU `getopt_long`, as glibc runs it for criu: arguments are permuted
//! (options and non-options mix freely, unless `POSIXLY_CORRECT` is set);
//! `--` ends the options; short options cluster (`-dR`) and take their
//! argument attached (`-t5`) or as the next word (`-t 5`), an optional one
//! only attached (`-v4`; `-verbosity=0` is `-v` with the argument
//! `erbosity=0`); long options take `--name=value` or, when the argument
//! is required, `--name value`, and may be shortened to any unambiguous
//! prefix (`--leave-run`).
//!
//! The error messages are glibc's, without the program name.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// Whether an option takes an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HasArg {
    No,
    Required,
    /// Only when attached: `-vARG`, `--name=ARG`.
    Optional,
}

/// A short option: its letter, its argument and what it means.
#[derive(Debug, Clone, Copy)]
pub struct Short<K> {
    pub letter: u8,
    pub has_arg: HasArg,
    pub key: K,
}

/// A long option. Two entries with the same `has_arg` and `key` are the
/// same option for the ambiguity rule (criu's `--daemon` and
/// `--restore-detached`).
#[derive(Debug, Clone, Copy)]
pub struct Long<K> {
    pub name: &'static str,
    pub has_arg: HasArg,
    pub key: K,
}

/// One option found on the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<K> {
    pub key: K,
    pub arg: Option<OsString>,
    /// As the user wrote its name: `-t` or `--tree` (the full name, even
    /// when abbreviated), for messages.
    pub name: String,
}

/// A line taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<K> {
    /// The options, in the order given.
    pub options: Vec<Found<K>>,
    /// The other words, in the order given (what glibc's permutation
    /// leaves at `argv[optind..]`).
    pub operands: Vec<OsString>,
    /// Where getopt stopped on a word it rejects: the options before it
    /// are in `options` (criu acts on them, a `-V` say, before failing).
    pub error: Option<GetoptError>,
}

/// A line getopt_long rejects: the message glibc prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GetoptError(pub String);

/// Parses `args` (without the program name).
pub fn parse<K: Copy + PartialEq>(
    args: &[OsString],
    shorts: &[Short<K>],
    longs: &[Long<K>],
    posixly_correct: bool,
) -> Parsed<K> {
    let mut out = Parsed {
        options: Vec::new(),
        operands: Vec::new(),
        error: None,
    };
    if let Err(e) = parse_into(&mut out, args, shorts, longs, posixly_correct) {
        out.error = Some(e);
    }
    out
}

fn parse_into<K: Copy + PartialEq>(
    out: &mut Parsed<K>,
    args: &[OsString],
    shorts: &[Short<K>],
    longs: &[Long<K>],
    posixly_correct: bool,
) -> Result<(), GetoptError> {
    let mut i = 0;
    while i < args.len() {
        let word = args[i].as_bytes();
        i += 1;
        if word == b"--" {
            out.operands.extend(args[i..].iter().cloned());
            break;
        }
        if word.len() < 2 || word[0] != b'-' {
            if posixly_correct {
                out.operands.extend(args[i - 1..].iter().cloned());
                break;
            }
            out.operands.push(args[i - 1].clone());
            continue;
        }
        if let Some(body) = word.strip_prefix(b"--") {
            let (name, value) = match body.iter().position(|&b| b == b'=') {
                Some(eq) => (&body[..eq], Some(&body[eq + 1..])),
                None => (body, None),
            };
            let opt = find_long(longs, name, body)?;
            let arg = match (opt.has_arg, value) {
                (HasArg::No, Some(_)) => {
                    return Err(GetoptError(format!(
                        "option '--{}' doesn't allow an argument",
                        opt.name
                    )));
                }
                (HasArg::No, None) | (HasArg::Optional, None) => None,
                (_, Some(v)) => Some(bytes(v)),
                (HasArg::Required, None) => match args.get(i) {
                    Some(next) => {
                        i += 1;
                        Some(next.clone())
                    }
                    None => {
                        return Err(GetoptError(format!(
                            "option '--{}' requires an argument",
                            opt.name
                        )));
                    }
                },
            };
            out.options.push(Found {
                key: opt.key,
                arg,
                name: format!("--{}", opt.name),
            });
            continue;
        }
        // A cluster of short options.
        let mut j = 1;
        while j < word.len() {
            let letter = word[j];
            j += 1;
            let Some(opt) = shorts.iter().find(|s| s.letter == letter) else {
                return Err(GetoptError(format!(
                    "invalid option -- '{}'",
                    char::from(letter).escape_default()
                )));
            };
            let rest = &word[j..];
            let arg = match opt.has_arg {
                HasArg::No => None,
                HasArg::Optional => {
                    j = word.len();
                    (!rest.is_empty()).then(|| bytes(rest))
                }
                HasArg::Required => {
                    j = word.len();
                    if !rest.is_empty() {
                        Some(bytes(rest))
                    } else if let Some(next) = args.get(i) {
                        i += 1;
                        Some(next.clone())
                    } else {
                        return Err(GetoptError(format!(
                            "option requires an argument -- '{}'",
                            char::from(letter)
                        )));
                    }
                }
            };
            out.options.push(Found {
                key: opt.key,
                arg,
                name: format!("-{}", char::from(letter)),
            });
        }
    }
    Ok(())
}

fn bytes(b: &[u8]) -> OsString {
    OsString::from_vec(b.to_vec())
}

/// The long option `name` stands for: itself, or the only option it is a
/// prefix of (or several that are one and the same).
fn find_long<'a, K: Copy + PartialEq>(
    longs: &'a [Long<K>],
    name: &[u8],
    written: &[u8],
) -> Result<&'a Long<K>, GetoptError> {
    let shown = || OsStr::from_bytes(written).to_string_lossy().into_owned();
    if let Some(exact) = longs.iter().find(|l| l.name.as_bytes() == name) {
        return Ok(exact);
    }
    let candidates: Vec<&Long<K>> = longs
        .iter()
        .filter(|l| !name.is_empty() && l.name.as_bytes().starts_with(name))
        .collect();
    match candidates.as_slice() {
        [] => Err(GetoptError(format!("unrecognized option '--{}'", shown()))),
        [first, rest @ ..]
            if rest
                .iter()
                .all(|c| c.has_arg == first.has_arg && c.key == first.key) =>
        {
            Ok(first)
        }
        all => {
            let names: Vec<String> = all.iter().map(|c| format!("'--{}'", c.name)).collect();
            Err(GetoptError(format!(
                "option '--{}' is ambiguous; possibilities: {}",
                shown(),
                names.join(" ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum K {
        Tree,
        Verbose,
        Detach,
        Running,
        Manage,
        Daemon,
        Deprecated,
    }

    const SHORTS: &[Short<K>] = &[
        Short {
            letter: b't',
            has_arg: HasArg::Required,
            key: K::Tree,
        },
        Short {
            letter: b'v',
            has_arg: HasArg::Optional,
            key: K::Verbose,
        },
        Short {
            letter: b'd',
            has_arg: HasArg::No,
            key: K::Detach,
        },
        Short {
            letter: b'R',
            has_arg: HasArg::No,
            key: K::Running,
        },
    ];
    const LONGS: &[Long<K>] = &[
        Long {
            name: "tree",
            has_arg: HasArg::Required,
            key: K::Tree,
        },
        Long {
            name: "verbosity",
            has_arg: HasArg::Optional,
            key: K::Verbose,
        },
        Long {
            name: "restore-detached",
            has_arg: HasArg::No,
            key: K::Detach,
        },
        Long {
            name: "daemon",
            has_arg: HasArg::No,
            key: K::Detach,
        },
        Long {
            name: "leave-running",
            has_arg: HasArg::No,
            key: K::Running,
        },
        Long {
            name: "manage-cgroups",
            has_arg: HasArg::Optional,
            key: K::Manage,
        },
        Long {
            name: "deprecated",
            has_arg: HasArg::No,
            key: K::Deprecated,
        },
        Long {
            name: "dangerous",
            has_arg: HasArg::No,
            key: K::Daemon,
        },
    ];

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn run(words: &[&str]) -> Result<Parsed<K>, GetoptError> {
        let p = parse(&args(words), SHORTS, LONGS, false);
        match p.error {
            Some(e) => Err(e),
            None => Ok(p),
        }
    }

    fn opts(p: &Parsed<K>) -> Vec<(K, Option<String>)> {
        p.options
            .iter()
            .map(|f| {
                (
                    f.key,
                    f.arg.as_ref().map(|a| a.to_string_lossy().into_owned()),
                )
            })
            .collect()
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn permutes_and_clusters() {
        let p = run(&["-t5", "dump", "-dR", "--tree", "7", "x"]).unwrap();
        assert_eq!(
            opts(&p),
            [
                (K::Tree, some("5")),
                (K::Detach, None),
                (K::Running, None),
                (K::Tree, some("7"))
            ]
        );
        assert_eq!(p.operands, args(&["dump", "x"]));
        // POSIXLY_CORRECT: the first operand ends the options.
        let p = parse(&args(&["dump", "-t", "5"]), SHORTS, LONGS, true);
        assert!(p.options.is_empty());
        assert_eq!(p.operands, args(&["dump", "-t", "5"]));
    }

    #[test]
    fn optional_arguments_only_attached() {
        let p = run(&[
            "-v",
            "-v4",
            "-vvv",
            "-verbosity=0",
            "--verbosity=2",
            "--verbosity",
            "3",
        ])
        .unwrap();
        assert_eq!(
            opts(&p),
            [
                (K::Verbose, None),
                (K::Verbose, some("4")),
                (K::Verbose, some("vv")),
                (K::Verbose, some("erbosity=0")),
                (K::Verbose, some("2")),
                (K::Verbose, None)
            ]
        );
        assert_eq!(p.operands, args(&["3"]));
    }

    #[test]
    fn required_argument_may_look_like_an_option() {
        let p = run(&["-t", "-d", "--tree", "--", "--tree=-R"]).unwrap();
        assert_eq!(
            opts(&p),
            [
                (K::Tree, some("-d")),
                (K::Tree, some("--")),
                (K::Tree, some("-R"))
            ]
        );
    }

    #[test]
    fn double_dash_ends_options() {
        let p = run(&["restore", "--", "-d", "cmd"]).unwrap();
        assert!(p.options.is_empty());
        assert_eq!(p.operands, args(&["restore", "-d", "cmd"]));
        // A lone "-" is an operand.
        assert_eq!(run(&["-"]).unwrap().operands, args(&["-"]));
    }

    #[test]
    fn abbreviations() {
        let p = run(&["--leave-run", "--restore-d", "--dae"]).unwrap();
        assert_eq!(
            opts(&p),
            [(K::Running, None), (K::Detach, None), (K::Detach, None)]
        );
        assert_eq!(p.options[0].name, "--leave-running");
        // "--da" may be --daemon or --dangerous, which differ; "--de" is
        // only --deprecated.
        assert!(run(&["--da"]).is_err());
        assert_eq!(opts(&run(&["--de"]).unwrap()), [(K::Deprecated, None)]);
        let e = run(&["--d"]).unwrap_err();
        assert!(
            e.0.starts_with("option '--d' is ambiguous; possibilities:"),
            "{e}"
        );
        assert!(e.0.contains("'--dangerous'"), "{e}");
        // An exact name wins over longer ones.
        assert_eq!(opts(&run(&["--tree=1"]).unwrap()), [(K::Tree, some("1"))]);
    }

    #[test]
    fn errors_are_glibcs() {
        assert_eq!(
            run(&["--nope=1"]).unwrap_err().0,
            "unrecognized option '--nope=1'"
        );
        assert_eq!(
            run(&["--leave-running=1"]).unwrap_err().0,
            "option '--leave-running' doesn't allow an argument"
        );
        assert_eq!(
            run(&["--tree"]).unwrap_err().0,
            "option '--tree' requires an argument"
        );
        assert_eq!(run(&["-x"]).unwrap_err().0, "invalid option -- 'x'");
        assert_eq!(
            run(&["-dt"]).unwrap_err().0,
            "option requires an argument -- 't'"
        );
        // The options before a bad one are kept.
        let p = parse(&args(&["-d", "--nope", "-R"]), SHORTS, LONGS, false);
        assert_eq!(opts(&p), [(K::Detach, None)]);
        assert!(p.error.is_some());
        // Optional arguments never take the next word.
        assert_eq!(
            opts(&run(&["--manage-cgroups", "full"]).unwrap()),
            [(K::Manage, None)]
        );
    }
}
