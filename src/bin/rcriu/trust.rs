//! A copy of rcriu that runs with more privilege than its caller
//! (setuid, setgid, file capabilities) would be root's power in the
//! caller's hands, with the caller's environment choosing its
//! configuration files, log paths and fault injection: rcriu refuses to
//! run so. The one exception is criu's `--unprivileged`, named on the
//! command line: a copy given CAP_CHECKPOINT_RESTORE and CAP_SYS_PTRACE
//! as file capabilities, run by a user as that user (the real and
//! effective ids alike), which then dumps and restores only that user's
//! own processes, ignores the configuration files and fault injection the
//! environment names, and refuses every command but dump, restore and
//! check (see `rcriu_restore::unprivileged`).

/// Why rcriu must not run, when it must not; `unprivileged`: the command
/// line has `--unprivileged`.
pub fn privileged_exec(unprivileged: bool) -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for field in ["Uid:", "Gid:"] {
        let ids: Vec<&str> = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .map(|l| l.split_whitespace().collect())
            .unwrap_or_default();
        if let [real, effective, ..] = ids.as_slice()
            && real != effective
        {
            let what = if field == "Uid:" { "user" } else { "group" };
            return Some(format!(
                "refusing to run set-{what}-ID (real {what} {real}, effective {effective}): run rcriu as root instead"
            ));
        }
    }
    if secure_exec() && !unprivileged {
        return Some(
            "refusing to run with privileges its caller lacks (the kernel marked this exec secure: file capabilities or set-ID): run rcriu as root, or with --unprivileged".into(),
        );
    }
    None
}

/// The auxiliary vector's AT_SECURE: the kernel gave this exec more
/// privilege than its caller had.
fn secure_exec() -> bool {
    const AT_SECURE: u64 = 23;
    let Ok(auxv) = std::fs::read("/proc/self/auxv") else {
        // Unreadable: assume the worst.
        return true;
    };
    auxv.chunks_exact(16).any(|pair| {
        let word = |b: &[u8]| u64::from_ne_bytes(b.try_into().expect("chunks of 16 bytes"));
        word(&pair[..8]) == AT_SECURE && word(&pair[8..]) != 0
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_plain_run_is_not_privileged() {
        assert_eq!(super::privileged_exec(false), None);
    }
}
