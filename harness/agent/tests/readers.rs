//! The agent binary on the host (stdin/stdout mode): readers are real child processes, a FIFO
//! without a writer keeps one asleep in open(2) for as long as the test wants.

use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use klp_protocol::{decode, encode, Condition, ReaderState, Request, Response, TaskInfo};

struct Agent {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next: u64,
    dir: PathBuf,
}

impl Agent {
    fn start(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("klp-agent-readers-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_klp-agent"))
            .env("KLP_AGENT_READERS_DIR", dir.join("results"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Agent { child, stdin, stdout, next: 0, dir }
    }

    fn call(&mut self, req: Request) -> Response {
        self.next += 1;
        self.stdin.write_all(encode(self.next, &req).as_bytes()).unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let env = decode::<Response>(&line).unwrap();
        assert_eq!(env.id, self.next);
        env.body
    }

    fn start_reader(&mut self, tag: &str, path: &Path) -> Result<i32, String> {
        match self.call(Request::StartReader { tag: tag.into(), path: path.to_str().unwrap().into() }) {
            Response::Started { pid } => Ok(pid),
            Response::Error { message } => Err(message),
            r => panic!("{r:?}"),
        }
    }

    fn status(&mut self, tag: &str) -> ReaderState {
        match self.call(Request::ReaderStatus { tag: tag.into() }) {
            Response::Reader(s) => s,
            r => panic!("{r:?}"),
        }
    }

    fn wait_done(&mut self, tag: &str, timeout_ms: u64) -> (bool, Option<String>) {
        let c = Condition::ReaderDone { tag: tag.into() };
        match self.call(Request::WaitFor { condition: c, timeout_ms, poll_ms: 5 }) {
            Response::Waited { met, last, .. } => (met, last),
            r => panic!("{r:?}"),
        }
    }

    fn tasks(&mut self) -> Vec<TaskInfo> {
        match self.call(Request::Tasks) {
            Response::Tasks { tasks } => tasks,
            r => panic!("{r:?}"),
        }
    }

    /// The task of `pid` once it has named itself `comm` (the child renames itself right after
    /// exec).
    fn task_named(&mut self, pid: i32, comm: &str) -> TaskInfo {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let t = self.tasks().into_iter().find(|t| t.pid == pid && t.tid == pid);
            match t {
                Some(t) if t.comm == comm && t.state == "S" => return t,
                t if Instant::now() > end => panic!("pid {pid} never became `{comm}` asleep: {t:?}"),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn finish(mut self) {
        drop(self.stdin);
        assert!(self.child.wait().unwrap().success());
        std::fs::remove_dir_all(&self.dir).unwrap();
    }
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "{}", std::io::Error::last_os_error());
}

#[test]
fn readers_read_report_and_block() {
    let mut a = Agent::start("main");

    // A regular file: done at once, with what a read gives.
    let pid = a.start_reader("version", Path::new("/proc/version")).unwrap();
    assert!(pid > 0);
    let (met, last) = a.wait_done("version", 10_000);
    assert!(met, "{last:?}");
    assert_eq!(last.as_deref(), Some(format!("pid {pid} exited with status 0").as_str()));
    let s = a.status("version");
    let version = std::fs::read_to_string("/proc/version").unwrap();
    assert_eq!(s, ReaderState { tag: "version".into(), pid, done: true, data: Some(version), errno: None });

    // open(2) fails: the errno is the answer.
    a.start_reader("missing", Path::new("/nonexistent/x")).unwrap();
    assert!(a.wait_done("missing", 10_000).0);
    let s = a.status("missing");
    assert!(s.done && s.data.is_none());
    assert_eq!(s.errno.map(|e| (e.errno, e.name)), Some((2, "ENOENT".into())));

    // A FIFO without a writer: the reader sleeps in open(2) until the test writes.
    let fifo = a.dir.join("fifo");
    mkfifo(&fifo);
    let tag = "a-rather-long-tag";
    let pid = a.start_reader(tag, &fifo).unwrap();
    let t = a.task_named(pid, "klp-a-rather-lo");
    assert!(!t.kthread);
    let (met, last) = a.wait_done(tag, 100);
    assert!(!met);
    assert_eq!(last, Some(format!("pid {pid} running")));
    assert_eq!(a.status(tag), ReaderState { tag: tag.into(), pid, done: false, data: None, errno: None });
    // A live tag cannot be reused.
    let e = a.start_reader(tag, Path::new("/proc/version")).unwrap_err();
    assert!(e.contains("still running"), "{e}");
    // Unknown tags are errors, not "not done".
    assert!(matches!(a.call(Request::ReaderStatus { tag: "nope".into() }), Response::Error { .. }));
    let c = Condition::ReaderDone { tag: "nope".into() };
    assert!(matches!(a.call(Request::WaitFor { condition: c, timeout_ms: 0, poll_ms: 1 }), Response::Error { .. }));
    assert!(a.start_reader("../x", Path::new("/proc/version")).is_err());

    // Writing and closing the FIFO ends the read.
    std::fs::write(&fifo, "hello\n").unwrap();
    assert!(a.wait_done(tag, 10_000).0);
    let s = a.status(tag);
    assert_eq!((s.done, s.data.as_deref(), s.errno), (true, Some("hello\n"), None));
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "reaped");

    // A finished tag can be started again; the old result is gone first.
    let pid2 = a.start_reader(tag, Path::new("/nonexistent")).unwrap();
    assert_ne!(pid2, pid);
    assert!(a.wait_done(tag, 10_000).0);
    assert_eq!(a.status(tag).errno.map(|e| e.name), Some("ENOENT".into()));

    a.finish();
}
