//! criu's options from outside input: a configuration file's text, a
//! command line (words split at NUL bytes), and an RPC request's
//! `criu_opts`, each applied to the typed options and checked against
//! the support table.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use rcriu_images::rpc::CriuReq;
use rcriu_opts::cli::{self, Env, Outcome};
use rcriu_opts::rpc::{self, Peer};
use rcriu_opts::{Command, Face, Options, config, support};

fn judge(o: &Options) {
    for cmd in [Command::Dump, Command::Restore, Command::Check] {
        let _ = support::validate(o, cmd);
        let _ = support::check(o, cmd, Face::Cli);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(words) = config::words(data, Path::new("fuzz.conf")) {
        let _ = cli::parse(&words, &Env::default());
    }
    let args: Vec<OsString> = data
        .split(|&b| b == 0)
        .map(|w| OsString::from_vec(w.to_vec()))
        .collect();
    if let Ok(Outcome::Run(i)) = cli::parse(&args, &Env::default()) {
        judge(&i.options);
    }
    if let Ok(req) = CriuReq::decode(data)
        && let Some(opts) = &req.opts
    {
        let mut o = Options::default();
        let peer = Peer { pid: 1, swrk: true };
        if rpc::apply(opts, peer, &mut o).is_ok() {
            judge(&o);
        }
        let _ = rpc::images_dir(opts, peer);
    }
});
