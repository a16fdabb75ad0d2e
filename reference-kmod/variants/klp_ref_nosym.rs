//! Reference livepatch of a function that does not exist: its load fails with EINVAL (SY2).
//!
//! `old_name = "klp_ref_no_such_function"` in vmlinux:
//! `livepatch: symbol 'klp_ref_no_such_function' not found in symbol table`.

#![no_std]

klp::func_patch! {
    old: c"klp_ref_no_such_function" in vmlinux,
    new: fn klp_ref_nosym_func() {}
}
