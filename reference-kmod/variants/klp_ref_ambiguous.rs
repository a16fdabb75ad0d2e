//! Reference livepatch of an ambiguous name with sympos 0: its load fails with EINVAL (SY2).
//!
//! `load_elf_binary` is in vmlinux twice on every Debian 6.1 amd64 kernel: fs/binfmt_elf.c and
//! fs/compat_binfmt_elf.c (CONFIG_COMPAT_BINFMT_ELF=y), both `static`. With `old_sympos = 0`:
//! `livepatch: unresolvable ambiguity for symbol 'load_elf_binary' in object '(null)'`.

#![no_std]

use klp::{c_int, c_void};

klp::func_patch! {
    old: c"load_elf_binary" in vmlinux,
    new:
        /// Would replace `static int load_elf_binary(struct linux_binprm *bprm)`; never runs.
        fn klp_ref_ambiguous_load(_bprm: *mut c_void) -> c_int {
            -8 // ENOEXEC: "not my format"
        }
}
