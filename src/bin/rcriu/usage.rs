//! The usage text (`-h`, `--help`, and after a line criu rejects), in
//! criu's order of commands; the options are listed from the support
//! table, each with what rcriu does with it.

use rcriu::opts::support::{Status, TABLE};

/// The short usage, as criu prints it after an error.
pub fn short(prog: &str) -> String {
    format!(
        "
Usage:
  {prog} dump|pre-dump -t PID [<options>]
  {prog} restore [<options>]
  {prog} check [--feature FEAT]
  {prog} page-server
  {prog} service [<options>]
  {prog} dedup
  {prog} lazy-pages -D DIR [<options>]
  {prog} swrk FD

Commands:
  dump           checkpoint a process identified by pid
  pre-dump       write the memory of a running process, tracking its writes
  restore        restore a process
  check          say which features rcriu has on this kernel
  page-server    launch a page server
  service        serve CRIU's RPC on a unix socket (--address)
  dedup          remove duplicate pages of a dump
  cpuinfo dump   write the CPU's information into an image (not supported yet)
  cpuinfo check  check the CPU's information against an image (not supported yet)
  swrk FD        serve CRIU's RPC on the socket FD (as runc and podman start it)
"
    )
}

/// rcriu's own options, which criu has not.
const OWN: &[(&str, &str)] = &[
    (
        "--encrypt",
        "dump: encrypt and authenticate every image (AES-256-GCM), with the key of:",
    ),
    (
        "--encrypt-key-file",
        "PATH: the key (32 raw bytes or 64 hex digits); restore needs it",
    ),
    (
        "--encrypt-key-fd",
        "FD: the key, read from descriptor FD to its end",
    ),
];

/// The full help: the usage, then every option and what rcriu does with
/// it.
pub fn long(prog: &str, rcriu_name: bool) -> String {
    let mut s = short(prog);
    if rcriu_name {
        s.push_str(
            "
rcriu's own commands (not under the name criu):
  decode -i IMG [-o JSON] [--pretty]   an image as crit's JSON
  encode -i JSON -o IMG                crit's JSON back into an image
  show FILE|DIR                        an image, or a summary of a dump
",
        );
    }
    s.push_str(
        "
Options are criu 4.2's, read as criu reads them (also from
/etc/criu/default.conf, $HOME/.criu/default.conf, $CRIU_CONFIG_FILE and
--config FILE). Boolean options take a --no- form. What rcriu does with
each:

",
    );
    for e in TABLE {
        if e.cli.is_empty() {
            continue;
        }
        if let Some((_, what)) = OWN.iter().find(|(name, _)| *name == e.cli) {
            s.push_str(&format!("  {:<34} rcriu's own: {what}\n", e.cli));
            continue;
        }
        let what = match e.status {
            Status::Honoured => "as criu".to_string(),
            Status::NoOp(why) => format!("accepted, changes nothing: {why}"),
            Status::NotYet(what) => format!("refused when asked for: {what} not supported yet"),
        };
        s.push_str(&format!("  {:<34} {what}\n", e.cli));
    }
    s.push_str("\nSee docs/options.md in rcriu's sources for the details.\n");
    s
}
