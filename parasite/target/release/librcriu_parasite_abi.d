/work/main/parasite/target/release/librcriu_parasite_abi.rlib: /work/main/parasite/abi/src/lib.rs /work/main/parasite/abi/src/restorer.rs
