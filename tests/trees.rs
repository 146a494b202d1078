//! Process trees (issue 14): every process under the dumped one, with
//! its sessions, groups, zombies, a stopped child and what parent and
//! child share (a pipe with bytes in it, one open file description),
//! dumped and restored; each process checks itself after the restore.

mod common;

use common::{cycle, leave_running, setup};

#[test]
fn a_parent_and_its_child_sharing_a_pipe_and_a_file() {
    let _g = setup();
    cycle("tree", &["pair"], None).unwrap();
    leave_running("tree", &["pair"]);
}

#[test]
fn four_generations() {
    let _g = setup();
    cycle("tree", &["deep"], None).unwrap();
}

#[test]
fn process_groups() {
    let _g = setup();
    cycle("tree", &["groups"], None).unwrap();
}

#[test]
fn a_session_of_a_child() {
    let _g = setup();
    cycle("tree", &["session"], None).unwrap();
}

#[test]
fn zombies_come_back_with_their_status() {
    let _g = setup();
    cycle("tree", &["zombies"], None).unwrap();
}

#[test]
fn a_stopped_child_stays_stopped() {
    let _g = setup();
    cycle("tree", &["stopped"], None).unwrap();
}
