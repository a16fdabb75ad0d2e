//! An empty `compiler_builtins`: rustc links one into every crate, but the kernel provides the
//! few runtime functions (memcpy, memset, ...) that LLVM may call, and fat LTO leaves no others.
#![no_std]
#![feature(compiler_builtins)]
#![compiler_builtins]
#![no_builtins]
