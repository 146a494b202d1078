/work/main/parasite/target/release/deps/rcriu_blob_rt-f6a798f520e26085.d: /work/main/clippy.toml rt/src/lib.rs rt/src/mem.rs rt/src/nr.rs rt/src/syscall.rs Cargo.toml

/work/main/parasite/target/release/deps/librcriu_blob_rt-f6a798f520e26085.rmeta: /work/main/clippy.toml rt/src/lib.rs rt/src/mem.rs rt/src/nr.rs rt/src/syscall.rs Cargo.toml

/work/main/clippy.toml:
rt/src/lib.rs:
rt/src/mem.rs:
rt/src/nr.rs:
rt/src/syscall.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
