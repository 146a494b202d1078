/work/main/parasite/target/release/deps/rcriu_parasite-f373b17da9eba92e.d: /work/main/clippy.toml blob/src/main.rs blob/src/cmds.rs blob/src/sys.rs Cargo.toml

/work/main/parasite/target/release/deps/librcriu_parasite-f373b17da9eba92e.rmeta: /work/main/clippy.toml blob/src/main.rs blob/src/cmds.rs blob/src/sys.rs Cargo.toml

/work/main/clippy.toml:
blob/src/main.rs:
blob/src/cmds.rs:
blob/src/sys.rs:
Cargo.toml:

# env-dep:CLIPPY_ARGS=-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__
# env-dep:CLIPPY_CONF_DIR
