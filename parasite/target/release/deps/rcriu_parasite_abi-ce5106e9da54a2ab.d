/work/main/parasite/target/release/deps/rcriu_parasite_abi-ce5106e9da54a2ab.d: abi/src/lib.rs abi/src/restorer.rs

/work/main/parasite/target/release/deps/librcriu_parasite_abi-ce5106e9da54a2ab.rlib: abi/src/lib.rs abi/src/restorer.rs

/work/main/parasite/target/release/deps/librcriu_parasite_abi-ce5106e9da54a2ab.rmeta: abi/src/lib.rs abi/src/restorer.rs

abi/src/lib.rs:
abi/src/restorer.rs:
