/work/main/parasite/target/release/deps/rcriu_restorer-9866878b0a45e536.d: /work/main/clippy.toml restorer/src/main.rs restorer/src/creds.rs restorer/src/fds.rs restorer/src/mm.rs restorer/src/task.rs restorer/src/thread.rs restorer/src/timers.rs Cargo.toml

/work/main/parasite/target/release/deps/librcriu_restorer-9866878b0a45e536.rmeta: /work/main/clippy.toml restorer/src/main.rs restorer/src/creds.rs restorer/src/fds.rs restorer/src/mm.rs restorer/src/task.rs restorer/src/thread.rs restorer/src/timers.rs Cargo.toml

/work/main/clippy.toml:
restorer/src/main.rs:
restorer/src/creds.rs:
restorer/src/fds.rs:
restorer/src/mm.rs:
restorer/src/task.rs:
restorer/src/thread.rs:
restorer/src/timers.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
