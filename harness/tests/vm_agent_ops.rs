//! Real VM: the agent's task listing, background readers and the `FileNotEquals` /
//! `ReaderDone` conditions against the cached Debian kernel under TCG.

mod vm_support;

use std::time::{Duration, Instant};

use klp_conform::agent_client::AgentClient;
use klp_conform::vm::{Shutdown, Vm};
use klp_protocol::{Condition, TaskInfo};
use vm_support::{alive, fixture, qemu_children};

/// The main thread of `pid` once it has renamed itself `comm` and sleeps (state S).
fn asleep_as(a: &mut AgentClient, pid: i32, comm: &str) -> TaskInfo {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let t = a.tasks().unwrap().into_iter().find(|t| t.pid == pid && t.tid == pid);
        match t {
            Some(t) if t.comm == comm && t.state == "S" => return t,
            t if Instant::now() > end => panic!("pid {pid} never became `{comm}` asleep: {t:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn tasks_readers_and_conditions() {
    let t0 = Instant::now();
    let fx = fixture();
    let cfg = fx.config("agent-ops");
    let mut vm = Vm::boot(&cfg).unwrap();
    let qemu = vm.pid();
    let a = vm.agent();

    // Tasks: the agent is pid 1 and a user task; kthreadd (pid 2) a kernel thread; outside a
    // transition every task's patch_state is -1 (CONFIG_LIVEPATCH=y).
    let tasks = a.tasks().unwrap();
    eprintln!("{} tasks; first: {:?}", tasks.len(), &tasks[..3.min(tasks.len())]);
    let init = tasks.iter().find(|t| t.pid == 1 && t.tid == 1).expect("pid 1 listed");
    assert!(!init.kthread && init.state == "R", "{init:?}");
    let kthreadd = tasks.iter().find(|t| t.pid == 2).expect("pid 2 listed");
    assert_eq!((kthreadd.comm.as_str(), kthreadd.kthread), ("kthreadd", true));
    assert!(tasks.iter().filter(|t| t.kthread).count() > 10);
    assert!(tasks.iter().all(|t| t.patch_state == Some(-1)), "{tasks:?}");
    assert!(tasks.windows(2).all(|w| (w[0].pid, w[0].tid) < (w[1].pid, w[1].tid)));

    // A reader of a regular procfs file: done at once, with what read_file gives.
    let pid = a.start_reader("version", "/proc/version").unwrap();
    let (met, last) = a.wait_for(Condition::ReaderDone { tag: "version".into() }, Duration::from_secs(20)).unwrap();
    assert!(met, "{last:?}");
    let s = a.reader_status("version").unwrap();
    assert_eq!((s.pid, s.done, s.errno.as_ref()), (pid, true, None));
    assert_eq!(s.data, Some(a.read_file("/proc/version").unwrap().unwrap()));
    // Reaped by PID 1: no zombie left.
    assert!(!alive_in_guest(a, pid));

    // open(2) fails: the errno is the outcome.
    a.start_reader("missing", "/nonexistent/x").unwrap();
    assert!(a.wait_for(Condition::ReaderDone { tag: "missing".into() }, Duration::from_secs(20)).unwrap().0);
    let s = a.reader_status("missing").unwrap();
    assert!(s.done && s.data.is_none());
    assert_eq!(s.errno.map(|e| e.name), Some("ENOENT".into()));

    // trace_pipe with an empty ring buffer blocks in read(2) (ring_buffer_wait, interruptible).
    let pid = a.start_reader("pipe", "/sys/kernel/tracing/trace_pipe").unwrap();
    let t = asleep_as(a, pid, "klp-pipe");
    assert_eq!((t.kthread, t.patch_state), (false, Some(-1)), "{t:?}");
    eprintln!("trace_pipe reader: {t:?}; wchan {:?}", a.read_file(&format!("/proc/{pid}/wchan")).unwrap());
    eprintln!("stack:\n{}", a.read_file(&format!("/proc/{pid}/stack")).unwrap().unwrap_or_else(|e| e.name));
    let w = a
        .wait_for_with(
            Condition::ReaderDone { tag: "pipe".into() },
            Duration::from_millis(500),
            Duration::from_millis(50),
        )
        .unwrap();
    assert!(!w.met && w.elapsed >= Duration::from_millis(500), "{w:?}");
    assert_eq!(w.last, Some(format!("pid {pid} running")));
    let s = a.reader_status("pipe").unwrap();
    assert_eq!((s.done, s.data, s.errno), (false, None, None));
    assert!(matches!(a.start_reader("pipe", "/proc/version"), Err(e) if e.to_string().contains("still running")));
    assert!(a.reader_status("nope").is_err());

    // /proc/kmsg: all of the syslog, then a sleep in do_syslog (for the record).
    let kpid = a.start_reader("kmsg", "/proc/kmsg").unwrap();
    let (met, last) = a.wait_for(Condition::ReaderDone { tag: "kmsg".into() }, Duration::from_secs(2)).unwrap();
    let kt = a.tasks().unwrap().into_iter().find(|t| t.tid == kpid);
    let wchan = a.read_file(&format!("/proc/{kpid}/wchan")).unwrap();
    eprintln!("/proc/kmsg reader after 2s: done {met} ({last:?}), task {kt:?}, wchan {wchan:?}");
    assert!(!met);

    // FileNotEquals: "stays at" checks.
    let ostype = |v: &str| Condition::FileNotEquals { path: "/proc/sys/kernel/ostype".into(), value: v.into() };
    let w = a.wait_for_with(ostype("Linux"), Duration::from_millis(300), Duration::from_millis(20)).unwrap();
    assert!(!w.met && w.elapsed >= Duration::from_millis(300), "{w:?}");
    assert_eq!(w.last.as_deref(), Some("Linux\n"));
    let (met, last) = a.wait_for(ostype("Plan9"), Duration::from_secs(5)).unwrap();
    assert!(met);
    assert_eq!(last.as_deref(), Some("Linux\n"));
    let gone = Condition::FileNotEquals { path: "/sys/kernel/livepatch/p/transition".into(), value: "1".into() };
    let (met, last) = a.wait_for(gone, Duration::from_secs(5)).unwrap();
    assert!(met);
    assert_eq!(last.as_deref(), Some("<ENOENT>"));

    // Power-off does not wait for the reader still asleep in trace_pipe.
    assert!(alive_in_guest(a, pid));
    assert_eq!(vm.console_problem(), None, "{}", vm.console_text());
    let t = Instant::now();
    assert_eq!(vm.shutdown().unwrap(), Shutdown::PoweredOff);
    eprintln!(
        "power off with a live reader: {:.2}s; whole test {:.1}s",
        t.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    assert!(t.elapsed() < Duration::from_secs(15));
    assert!(!alive(qemu));
    assert_eq!(qemu_children(), Vec::<u32>::new());
    let console = std::fs::read_to_string(cfg.workdir.join("console.log")).unwrap();
    assert!(console.contains("reboot: Power down"), "{}", klp_conform::tools::tail(&console, 20));
}

fn alive_in_guest(a: &mut AgentClient, pid: i32) -> bool {
    a.tasks().unwrap().iter().any(|t| t.pid == pid)
}
