/work/main/parasite/target/release/deps/rcriu_blob_rt-167e7c96a7ba5880.d: rt/src/lib.rs rt/src/mem.rs rt/src/nr.rs rt/src/syscall.rs

/work/main/parasite/target/release/deps/librcriu_blob_rt-167e7c96a7ba5880.rlib: rt/src/lib.rs rt/src/mem.rs rt/src/nr.rs rt/src/syscall.rs

/work/main/parasite/target/release/deps/librcriu_blob_rt-167e7c96a7ba5880.rmeta: rt/src/lib.rs rt/src/mem.rs rt/src/nr.rs rt/src/syscall.rs

rt/src/lib.rs:
rt/src/mem.rs:
rt/src/nr.rs:
rt/src/syscall.rs:
