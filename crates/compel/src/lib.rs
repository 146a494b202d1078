//! compel: the infection engine.
//!
//! Everything rcriu reads from inside a process goes through here:
//! - [`Seized`]: every thread of a process stopped under ptrace, released
//!   exactly as found;
//! - [`ThreadCtx`] and [`Remote`]: a thread's registers (general, xsave,
//!   signal mask) and syscalls run in it, each with a lifeline that puts
//!   the thread back should rcriu die meanwhile;
//! - [`Parasite`]: a no_std blob loaded into the process, serving commands
//!   over a control socket (signal actions, timers, credentials, fds, and
//!   page dumping by `vmsplice`), then removed without a trace;
//! - [`fault`]: numbered fault points and the abort flag;
//! - [`freezer`]: a freezer cgroup frozen while its tasks are seized.
//!
//! `unsafe` lives in `sys` only.

#![deny(unsafe_code)]

mod blob;
mod error;
pub mod fault;
pub mod freezer;
mod lifeline;
mod parasite;
pub mod regs;
mod remote;
mod seize;
mod sigframe;
#[allow(unsafe_code)]
pub mod sys;

pub use error::{Error, Result};
pub use parasite::Parasite;
pub use rcriu_parasite_abi as abi;
pub use regs::{UserRegs, Xstate};
pub use remote::{BLOCK_ALL, Remote, ThreadCtx};
pub use seize::{Seized, Thread, descendants};
