//! Running work items on several threads while delivering their results in item order: cases
//! run in parallel guests, but KTAP, `report.json` and every other output see them in
//! suite/case order whatever order they finish in.
//!
//! Items start in order. An exclusive item (a case whose meaning depends on the timing of an
//! otherwise idle host) starts only when nothing else runs, and nothing starts beside it.

use std::collections::BTreeMap;
use std::sync::{mpsc, Condvar, Mutex};

#[derive(Default)]
struct State {
    next: usize,
    running: usize,
    exclusive_running: bool,
}

/// Run `work` over `items` on up to `jobs` threads (each item on one thread, from start to
/// end: a VM belongs to the thread that booted it). `started(i, running)` (as an item starts),
/// `live(i, p)` (whatever `work` emits while it runs) and `deliver(i, result)` run on the
/// calling thread; `deliver` sees the items in order, while `running` is the set of items on
/// a thread right now, whatever the delivery order. An error from `deliver` stops new
/// items from starting and is returned once the running ones are done.
pub fn run_in_order<T, R, P, E>(
    items: &[T],
    jobs: usize,
    exclusive: impl Fn(&T) -> bool + Sync,
    work: impl Fn(usize, &T, &dyn Fn(P)) -> R + Sync,
    mut started: impl FnMut(usize, &std::collections::BTreeSet<usize>),
    mut live: impl FnMut(usize, P),
    mut deliver: impl FnMut(usize, R) -> Result<(), E>,
) -> Result<(), E>
where
    T: Sync,
    R: Send,
    P: Send,
{
    let jobs = jobs.max(1).min(items.len().max(1));
    let state = Mutex::new(State::default());
    let wake = Condvar::new();
    let stop = std::sync::atomic::AtomicBool::new(false);
    enum Msg<R, P> {
        Started(usize),
        Live(usize, P),
        Done(usize, R),
    }
    let (tx, rx) = mpsc::channel::<Msg<R, P>>();
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let tx = tx.clone();
            let (work, exclusive, wake, stop) = (&work, &exclusive, &wake, &stop);
            scope.spawn(move || loop {
                let (i, excl) = {
                    let mut st = lock();
                    let excl = loop {
                        if st.next >= items.len() || stop.load(std::sync::atomic::Ordering::Relaxed) {
                            return;
                        }
                        let excl = exclusive(&items[st.next]);
                        if !st.exclusive_running && (!excl || st.running == 0) {
                            break excl;
                        }
                        st = wake.wait(st).unwrap_or_else(|p| p.into_inner());
                    };
                    let i = st.next;
                    st.next += 1;
                    st.running += 1;
                    st.exclusive_running |= excl;
                    (i, excl)
                };
                let _ = tx.send(Msg::Started(i));
                let emit = |p: P| {
                    let _ = tx.send(Msg::Live(i, p));
                };
                let r = work(i, &items[i], &emit);
                {
                    let mut st = lock();
                    st.running -= 1;
                    if excl {
                        st.exclusive_running = false;
                    }
                }
                wake.notify_all();
                let _ = tx.send(Msg::Done(i, r));
            });
        }
        drop(tx);
        let mut pending: BTreeMap<usize, R> = BTreeMap::new();
        let mut running = std::collections::BTreeSet::new();
        let mut next_out = 0;
        let mut result = Ok(());
        for msg in rx {
            match msg {
                Msg::Started(i) => {
                    running.insert(i);
                    started(i, &running);
                }
                Msg::Live(i, p) => live(i, p),
                Msg::Done(i, r) => {
                    running.remove(&i);
                    pending.insert(i, r);
                    while let Some(r) = pending.remove(&next_out) {
                        if result.is_ok() {
                            result = deliver(next_out, r);
                            if result.is_err() {
                                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                                wake.notify_all();
                            }
                        }
                        next_out += 1;
                    }
                }
            }
        }
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn results_arrive_in_order_whatever_the_finishing_order() {
        let items: Vec<u64> = vec![50, 5, 30, 1, 20, 0];
        let mut seen = Vec::new();
        run_in_order::<_, _, (), ()>(
            &items,
            4,
            |_| false,
            |i, ms, _| {
                std::thread::sleep(Duration::from_millis(*ms));
                i * 10
            },
            |_, _| {},
            |_, ()| {},
            |i, r| {
                seen.push((i, r));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, (0..6).map(|i| (i, i * 10)).collect::<Vec<_>>());
    }

    #[test]
    fn parallelism_is_bounded_and_exclusive_items_run_alone() {
        let items: Vec<bool> = vec![false, false, false, true, false, false, true, false];
        let running = AtomicUsize::new(0);
        let max = AtomicUsize::new(0);
        let alone = Mutex::new(Vec::new());
        run_in_order::<_, _, (), ()>(
            &items,
            3,
            |excl| *excl,
            |i, excl, _| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                if *excl {
                    alone.lock().unwrap().push((i, now));
                }
                std::thread::sleep(Duration::from_millis(20));
                running.fetch_sub(1, Ordering::SeqCst);
            },
            |_, _| {},
            |_, ()| {},
            |_, _| Ok(()),
        )
        .unwrap();
        assert_eq!(max.load(Ordering::SeqCst), 3);
        assert_eq!(*alone.lock().unwrap(), [(3, 1), (6, 1)], "exclusive items saw nothing else running");
    }

    #[test]
    fn a_delivery_error_stops_new_items() {
        let items = vec![(); 20];
        let ran = AtomicUsize::new(0);
        let r = run_in_order(
            &items,
            1,
            |_| false,
            |_, _, _: &dyn Fn(())| {
                ran.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
            },
            |_, _| {},
            |_, ()| {},
            |i, _| if i == 2 { Err("stdout closed") } else { Ok(()) },
        );
        assert_eq!(r, Err("stdout closed"));
        assert!(ran.load(Ordering::SeqCst) < 20);
    }
}
