//! Reference livepatch with a sympos beyond the number of matches: its load fails with EINVAL (SY2).
//!
//! `load_elf_binary` (two matches in vmlinux, see `klp_ref_ambiguous`) with `old_sympos = 3`:
//! `livepatch: symbol position 3 for symbol 'load_elf_binary' in object 'vmlinux' not found`.

#![no_std]

use klp::{c_int, c_void};

klp::func_patch! {
    old: c"load_elf_binary" in vmlinux,
    sympos: 3,
    new:
        /// Would replace `static int load_elf_binary(struct linux_binprm *bprm)`; never runs.
        fn klp_ref_badpos_load(_bprm: *mut c_void) -> c_int {
            -8 // ENOEXEC
        }
}
