/work/main/parasite/target/release/deps/rcriu_parasite_abi-9ae6dfcc3eb89091.d: abi/src/lib.rs abi/src/restorer.rs

/work/main/parasite/target/release/deps/librcriu_parasite_abi-9ae6dfcc3eb89091.rmeta: abi/src/lib.rs abi/src/restorer.rs

abi/src/lib.rs:
abi/src/restorer.rs:
