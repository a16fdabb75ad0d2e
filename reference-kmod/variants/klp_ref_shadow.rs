//! Module (not a livepatch) that exercises the shadow variable API at init and logs every result.
//!
//! The Rust counterpart of lib/livepatch/test_klp_shadow_vars.c: three objects × two ids
//! (0x1234, 0x1235) through `klp_shadow_get`, `_alloc`, `_get_or_alloc`, `_free` (with a dtor)
//! and `_free_all`; pointers are printed as `PTR<n>` (n in order of first appearance, PTR0 is
//! NULL), so the log is deterministic. Lines look like
//! `klp_ref_shadow: klp_shadow_get(obj=PTR1, id=0x1234) = PTR0` and
//! `klp_ref_shadow:   got expected NULL result`; the last line is `klp_ref_shadow: done`.
//! Also: a ctor that fails (id 0x1236, NULL ctor_data: the core logs
//! `livepatch: Failed to construct shadow variable <…, 1236> (-22)`), and the variable
//! `<0x6b6c7072, 0x1237>` that outlives the module (SH1): `keep=Y` allocates it, a later load
//! reports it (`kept variable found (value 0x4b454550)`), `keep=N` (default) frees it.
//! `dup_warn=Y` (default N) also allocates a duplicate, which WARNs (`Duplicate shadow variable`).
//@ livepatch-modinfo: no

#![no_std]

use core::sync::atomic::{AtomicUsize, Ordering};

use klp::{BoolParam, ShadowCtor, ShadowDtor, ShadowSlot, c_int, c_ulong, c_void, pr_info};

/// `keep` (bool, 0444): leave the kept variable allocated at exit.
#[unsafe(no_mangle)]
static klp_ref_shadow_keep: BoolParam = BoolParam::new(false);
/// `dup_warn` (bool, 0444): also do a duplicate `klp_shadow_alloc` (kernel WARN).
#[unsafe(no_mangle)]
static klp_ref_shadow_dup_warn: BoolParam = BoolParam::new(false);

const SV_ID1: c_ulong = 0x1234;
const SV_ID2: c_ulong = 0x1235;
const SV_ID_FAIL: c_ulong = 0x1236;
const KEEP_OBJ: usize = 0x6b6c_7072; // a key only, never dereferenced
const KEEP_ID: c_ulong = 0x1237;
const KEEP_VALUE: usize = 0x4b45_4550;
const NUM_OBJS: usize = 3;

// Pointer → PTR<n>. Used from init and from the ctor/dtor (IRQs off, under the shadow lock):
// atomics only, no allocation.
static PTRS: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];
static NPTRS: AtomicUsize = AtomicUsize::new(0);

fn ptr_id(p: usize) -> usize {
    let n = NPTRS.load(Ordering::Relaxed);
    for (i, slot) in PTRS.iter().enumerate().take(n) {
        if slot.load(Ordering::Relaxed) == p {
            return i;
        }
    }
    if n < PTRS.len() {
        PTRS[n].store(p, Ordering::Relaxed);
        NPTRS.store(n + 1, Ordering::Relaxed);
        n
    } else {
        usize::MAX
    }
}

fn addr(s: Option<klp::Shadow>) -> usize {
    s.map_or(0, klp::Shadow::addr)
}

extern "C" fn shadow_ctor(_obj: *mut c_void, data: &ShadowSlot, ctor_data: Option<&usize>) -> c_int {
    // SH3: the core allocates zeroed bytes before it calls the ctor. A kernel that did not
    // fails this module's init (and the case) here.
    if data.get() != 0 {
        pr_info!("shadow_ctor: PTR{} is not zeroed: {:#x}", ptr_id(data.addr()), data.get());
        return -22;
    }
    let Some(v) = ctor_data else { return -22 }; // EINVAL
    data.set(*v);
    pr_info!("shadow_ctor: PTR{} -> PTR{}", ptr_id(data.addr()), ptr_id(*v));
    0
}

extern "C" fn shadow_dtor(obj: *mut c_void, data: &ShadowSlot) {
    pr_info!("shadow_dtor(obj=PTR{}, shadow_data=PTR{})", ptr_id(obj as usize), ptr_id(data.addr()));
}

const CTOR: ShadowCtor = shadow_ctor;
const DTOR: ShadowDtor = shadow_dtor;

fn get(obj: usize, id: c_ulong) -> Option<klp::Shadow> {
    let sv = klp::shadow_get(obj, id);
    pr_info!("klp_shadow_get(obj=PTR{}, id=0x{:x}) = PTR{}", ptr_id(obj), id, ptr_id(addr(sv)));
    sv
}

fn alloc(obj: usize, id: c_ulong, var: Option<&usize>) -> Option<klp::Shadow> {
    let sv = klp::shadow_alloc(obj, id, Some(CTOR), var);
    pr_info!(
        "klp_shadow_alloc(obj=PTR{}, id=0x{:x}, size={:x}, gfp_flags=GFP_KERNEL), ctor=PTR{}, ctor_data=PTR{} = PTR{}",
        ptr_id(obj),
        id,
        core::mem::size_of::<usize>(),
        ptr_id(CTOR as usize),
        ptr_id(var.copied().unwrap_or(0)),
        ptr_id(addr(sv))
    );
    sv
}

fn get_or_alloc(obj: usize, id: c_ulong, var: &usize) -> Option<klp::Shadow> {
    let sv = klp::shadow_get_or_alloc(obj, id, Some(CTOR), Some(var));
    pr_info!(
        "klp_shadow_get_or_alloc(obj=PTR{}, id=0x{:x}, size={:x}, gfp_flags=GFP_KERNEL), ctor=PTR{}, ctor_data=PTR{} = PTR{}",
        ptr_id(obj),
        id,
        core::mem::size_of::<usize>(),
        ptr_id(CTOR as usize),
        ptr_id(*var),
        ptr_id(addr(sv))
    );
    sv
}

fn free(obj: usize, id: c_ulong) {
    klp::shadow_free(obj, id, Some(DTOR));
    pr_info!("klp_shadow_free(obj=PTR{}, id=0x{:x}, dtor=PTR{})", ptr_id(obj), id, ptr_id(DTOR as usize));
}

fn free_all(id: c_ulong) {
    klp::shadow_free_all(id, None);
    pr_info!("klp_shadow_free_all(id=0x{:x}, dtor=PTR{})", id, ptr_id(0));
}

/// `sv`, just returned by get/get_or_alloc, is the variable at `want_sv` holding `want_val`.
fn expect_ptr(sv: Option<klp::Shadow>, want_sv: usize, want_val: usize) -> bool {
    let Some(s) = sv.filter(|s| s.addr() == want_sv) else { return false };
    // SAFETY: the API has just returned it, nothing has freed it since (this module frees only
    // in passes 4 and 6, after which it reads nothing it freed) and no one else uses these ids.
    let value = unsafe { s.value() };
    if value != want_val {
        return false;
    }
    pr_info!("  got expected PTR{} -> PTR{} result", ptr_id(s.addr()), ptr_id(value));
    true
}

fn run() -> c_int {
    ptr_id(0);
    let objs = [0u64; NUM_OBJS];
    let obj = |i: usize| &objs[i] as *const u64 as usize;
    let nfields1 = [0u8; NUM_OBJS];
    let nfields2 = [0u32; NUM_OBJS];
    let pnfields1: [usize; NUM_OBJS] = core::array::from_fn(|i| &nfields1[i] as *const u8 as usize);
    let pnfields2: [usize; NUM_OBJS] = core::array::from_fn(|i| &nfields2[i] as *const u32 as usize);
    let mut sv1 = [0usize; NUM_OBJS];
    let mut sv2 = [0usize; NUM_OBJS];

    // Empty table: nothing found.
    if get(obj(0), SV_ID1).is_none() {
        pr_info!("  got expected NULL result");
    }

    // Pass 1: a char and an int shadow variable per object.
    for i in 0..NUM_OBJS {
        ptr_id(pnfields1[i]);
        let s = if i % 2 == 1 {
            alloc(obj(i), SV_ID1, Some(&pnfields1[i]))
        } else {
            get_or_alloc(obj(i), SV_ID1, &pnfields1[i])
        };
        let Some(s) = s else { return -12 };
        sv1[i] = s.addr();
        ptr_id(pnfields2[i]);
        let Some(s) = alloc(obj(i), SV_ID2, Some(&pnfields2[i])) else { return -12 };
        sv2[i] = s.addr();
    }

    // Pass 2: each one is found, with the value its ctor stored.
    for i in 0..NUM_OBJS {
        if !expect_ptr(get(obj(i), SV_ID1), sv1[i], pnfields1[i]) {
            return -22;
        }
        if !expect_ptr(get(obj(i), SV_ID2), sv2[i], pnfields2[i]) {
            return -22;
        }
    }

    // Pass 3: get_or_alloc returns the existing variables without calling the ctor.
    for i in 0..NUM_OBJS {
        let dup = &nfields1[i] as *const u8 as usize;
        ptr_id(dup);
        if !expect_ptr(get_or_alloc(obj(i), SV_ID1, &dup), sv1[i], pnfields1[i]) {
            return -22;
        }
    }

    // Pass 4: free <obj, ID1> with the dtor; gone afterwards.
    for i in 0..NUM_OBJS {
        free(obj(i), SV_ID1);
        if get(obj(i), SV_ID1).is_none() {
            pr_info!("  got expected NULL result");
        }
    }

    // Pass 5: <obj, ID2> still there.
    for i in 0..NUM_OBJS {
        if !expect_ptr(get(obj(i), SV_ID2), sv2[i], pnfields2[i]) {
            return -22;
        }
    }

    // Pass 6: free_all(ID2).
    free_all(SV_ID2);
    for i in 0..NUM_OBJS {
        if get(obj(i), SV_ID2).is_none() {
            pr_info!("  got expected NULL result");
        }
    }

    // A failing ctor: no variable, NULL.
    if alloc(obj(0), SV_ID_FAIL, None).is_none() && get(obj(0), SV_ID_FAIL).is_none() {
        pr_info!("  got expected NULL result");
    }

    // Opt-in: a duplicate alloc (WARN "Duplicate shadow variable").
    if klp_ref_shadow_dup_warn.get() {
        let v = pnfields1[0];
        let first = alloc(obj(0), SV_ID1, Some(&v));
        if first.is_some() && alloc(obj(0), SV_ID1, Some(&v)).is_none() {
            pr_info!("  got expected NULL result");
        }
        free(obj(0), SV_ID1);
    }

    // A variable that outlives the module.
    match klp::shadow_get(KEEP_OBJ, KEEP_ID) {
        Some(s) => {
            // SAFETY: only this module uses KEEP_ID, and only one instance of it is loaded at a
            // time (the loader refuses a second while the first is live), so nothing frees the
            // variable between the get above and this read.
            let value = unsafe { s.value() };
            pr_info!("kept variable found (value 0x{:x})", value);
            if !klp_ref_shadow_keep.get() {
                klp::shadow_free(KEEP_OBJ, KEEP_ID, None);
                pr_info!("kept variable freed");
            }
        }
        None => {
            pr_info!("no kept variable");
            if klp_ref_shadow_keep.get() {
                if klp::shadow_alloc(KEEP_OBJ, KEEP_ID, Some(CTOR), Some(&KEEP_VALUE)).is_none() {
                    return -12;
                }
                pr_info!("kept variable allocated (value 0x{:x})", KEEP_VALUE);
            }
        }
    }
    0
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_init() -> c_int {
    let ret = run();
    if ret != 0 {
        klp::shadow_free_all(SV_ID1, None);
        klp::shadow_free_all(SV_ID2, None);
        pr_info!("failed ({ret})");
        return ret;
    }
    pr_info!("done");
    0
}

#[unsafe(no_mangle)]
extern "C" fn klp_variant_exit() {}
