//! A freezer cgroup (criu's `--freeze-cgroup`): the cgroup the target
//! lives in is frozen before its tasks are seized, so that none can fork
//! or escape while rcriu attaches to them, and thawed once every task has
//! a ptrace interrupt pending (the tasks then stop under ptrace as they
//! wake).
//!
//! Two kinds, told apart as CRIU tells them: a cgroup v1 freezer has
//! `freezer.state` (write `FROZEN`/`THAWED`, read until it says
//! `FROZEN`), a cgroup v2 one has `cgroup.freeze` (write `1`/`0`, then
//! `cgroup.events` says `frozen 1`). Its tasks are listed in `tasks` (v1)
//! or `cgroup.threads` (v2), in the cgroup and every cgroup below it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcriu_proc::Pid;

use crate::{Error, Result};

/// How long a freeze may take before rcriu gives up (criu's default
/// `--timeout` is 10 s).
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// The cgroup version of a freezer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// A freezer's state as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Thawed,
    /// v1 only: on the way to frozen.
    Freezing,
    Frozen,
}

/// A freezer cgroup.
#[derive(Debug, Clone)]
pub struct Freezer {
    path: PathBuf,
    version: Version,
}

impl Freezer {
    /// The freezer cgroup at `path` (a directory of a cgroup v1 freezer
    /// hierarchy, or of a cgroup v2 hierarchy).
    pub fn open(path: &Path) -> Result<Freezer> {
        let version = if path.join("freezer.state").exists() {
            Version::V1
        } else if path.join("cgroup.freeze").exists() {
            Version::V2
        } else {
            return Err(Error::Freezer {
                path: path.to_owned(),
                what: "neither freezer.state (cgroup v1) nor cgroup.freeze (cgroup v2) is there"
                    .into(),
                source: None,
            });
        };
        Ok(Freezer {
            path: path.to_owned(),
            version,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn version(&self) -> Version {
        self.version
    }

    fn err(&self, what: String) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |e| Error::Freezer {
            path: self.path.clone(),
            what,
            source: Some(e),
        }
    }

    fn read(&self, name: &str) -> Result<String> {
        std::fs::read_to_string(self.path.join(name)).map_err(self.err(format!("reading {name}")))
    }

    fn write(&self, name: &str, value: &str) -> Result<()> {
        std::fs::write(self.path.join(name), value)
            .map_err(self.err(format!("writing {value:?} to {name}")))
    }

    /// The freezer's state now.
    pub fn state(&self) -> Result<State> {
        match self.version {
            Version::V1 => match self.read("freezer.state")?.trim() {
                "THAWED" => Ok(State::Thawed),
                "FREEZING" => Ok(State::Freezing),
                "FROZEN" => Ok(State::Frozen),
                other => Err(Error::Freezer {
                    path: self.path.clone(),
                    what: format!("unknown freezer.state {other:?}"),
                    source: None,
                }),
            },
            Version::V2 => {
                let asked = self.read("cgroup.freeze")?;
                if asked.trim() == "0" {
                    return Ok(State::Thawed);
                }
                let events = self.read("cgroup.events")?;
                let frozen = events
                    .lines()
                    .find_map(|l| l.strip_prefix("frozen "))
                    .map(str::trim);
                match frozen {
                    Some("1") => Ok(State::Frozen),
                    Some("0") => Ok(State::Freezing),
                    _ => Err(Error::Freezer {
                        path: self.path.clone(),
                        what: "cgroup.events has no frozen line".into(),
                        source: None,
                    }),
                }
            }
        }
    }

    fn ask(&self, frozen: bool) -> Result<()> {
        match (self.version, frozen) {
            (Version::V1, true) => self.write("freezer.state", "FROZEN"),
            (Version::V1, false) => self.write("freezer.state", "THAWED"),
            (Version::V2, true) => self.write("cgroup.freeze", "1"),
            (Version::V2, false) => self.write("cgroup.freeze", "0"),
        }
    }

    /// Freezes the cgroup and waits until it is frozen. The guard thaws
    /// it again when dropped (a cgroup found frozen is thawed too: its
    /// tasks must run to stop under ptrace; [`Freezer::refreeze`] puts it
    /// back afterwards).
    pub fn freeze(&self) -> Result<Frozen<'_>> {
        self.ask(true)?;
        // From here on the guard thaws, whatever happens.
        let guard = Frozen {
            freezer: self,
            thaw: true,
        };
        let start = Instant::now();
        let mut pause = Duration::from_micros(50);
        let mut asks = 0u32;
        loop {
            if self.state()? == State::Frozen {
                log::debug!(
                    "freezer {} frozen in {:?}",
                    self.path.display(),
                    start.elapsed()
                );
                return Ok(guard);
            }
            if start.elapsed() > FREEZE_TIMEOUT {
                return Err(Error::Freezer {
                    path: self.path.clone(),
                    what: format!("still not frozen after {FREEZE_TIMEOUT:?}"),
                    source: None,
                });
            }
            crate::fault::check_abort()?;
            // A cgroup v1 freeze can get stuck on a task: ask again now
            // and then, as the kernel's documentation once advised.
            asks += 1;
            if self.version == Version::V1 && asks.is_multiple_of(64) {
                self.ask(true)?;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    /// Freezes the cgroup again without waiting (it was frozen when the
    /// dump began).
    pub fn refreeze(&self) -> Result<()> {
        self.ask(true)
    }

    /// Every task (thread) in the cgroup and the cgroups below it.
    pub fn tasks(&self) -> Result<Vec<Pid>> {
        let list = match self.version {
            Version::V1 => "tasks",
            Version::V2 => "cgroup.threads",
        };
        let mut out = Vec::new();
        let mut dirs = vec![self.path.clone()];
        while let Some(dir) = dirs.pop() {
            let file = dir.join(list);
            let text = std::fs::read_to_string(&file).map_err(|e| Error::Freezer {
                path: self.path.clone(),
                what: format!("reading {}", file.display()),
                source: Some(e),
            })?;
            for line in text.lines() {
                let tid = line.trim().parse::<Pid>().map_err(|_| Error::Freezer {
                    path: self.path.clone(),
                    what: format!("{} lists {line:?}", file.display()),
                    source: None,
                })?;
                out.push(tid);
            }
            let entries = std::fs::read_dir(&dir).map_err(|e| Error::Freezer {
                path: self.path.clone(),
                what: format!("listing {}", dir.display()),
                source: Some(e),
            })?;
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(e.path());
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}

/// A frozen freezer cgroup, thawed on drop (or by [`Frozen::thaw`]).
#[derive(Debug)]
pub struct Frozen<'a> {
    freezer: &'a Freezer,
    thaw: bool,
}

impl Frozen<'_> {
    /// Thaws the cgroup (if rcriu froze it).
    pub fn thaw(mut self) -> Result<()> {
        self.thaw_inner()
    }

    fn thaw_inner(&mut self) -> Result<()> {
        if !std::mem::take(&mut self.thaw) {
            return Ok(());
        }
        self.freezer.ask(false)?;
        log::debug!("freezer {} thawed", self.freezer.path.display());
        Ok(())
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.thaw_inner() {
            log::error!("{e}");
        }
    }
}
