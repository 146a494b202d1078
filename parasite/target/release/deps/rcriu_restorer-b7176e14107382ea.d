/work/main/parasite/target/release/deps/rcriu_restorer-b7176e14107382ea.d: restorer/src/main.rs restorer/src/creds.rs restorer/src/fds.rs restorer/src/mm.rs restorer/src/task.rs restorer/src/thread.rs restorer/src/timers.rs

/work/main/parasite/target/release/deps/rcriu_restorer-b7176e14107382ea: restorer/src/main.rs restorer/src/creds.rs restorer/src/fds.rs restorer/src/mm.rs restorer/src/task.rs restorer/src/thread.rs restorer/src/timers.rs

restorer/src/main.rs:
restorer/src/creds.rs:
restorer/src/fds.rs:
restorer/src/mm.rs:
restorer/src/task.rs:
restorer/src/thread.rs:
restorer/src/timers.rs:
