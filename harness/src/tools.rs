//! Running host tools: find them on PATH (or say which Debian package provides them) and run
//! them with their stderr kept for the error message.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("`{tool}` is needed to {why}; install the Debian package `{package}` (apt-get install {package})")]
    Missing { tool: String, package: String, why: String },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed { command: String, status: String, stderr: String },
    #[error("could not run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

/// The full path of `tool` on PATH (or `tool` itself if it is a path that exists).
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        let p = PathBuf::from(tool);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file())
}

/// `Ok(path)` if `tool` is installed, otherwise an error naming the package that provides it.
pub fn require_tool(tool: &str, package: &str, why: &str) -> Result<PathBuf, ToolError> {
    find_tool(tool).ok_or_else(|| ToolError::Missing { tool: tool.into(), package: package.into(), why: why.into() })
}

/// Run a command to completion; its stdout on success, its stderr in the error otherwise.
pub fn run_capture(cmd: &mut Command) -> Result<String, ToolError> {
    let command = describe(cmd);
    let out = output(cmd).map_err(|source| ToolError::Spawn { command: command.clone(), source })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(failed(cmd, command, &out))
    }
}

/// The error for a tool that exited unsuccessfully: the tail of its stderr (its stdout when
/// stderr is empty), and, when the tool says the disk is full, the harness's own reading of
/// where: the fullest device among the tool's working directory and the paths on its command
/// line (kbuild, dpkg-deb and mmdebstrap only say "No space left on device").
pub fn failed(cmd: &Command, command: String, out: &Output) -> ToolError {
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    if text.trim().is_empty() {
        text = String::from_utf8_lossy(&out.stdout).into_owned();
    }
    let mut stderr = tail(&text, 40);
    if let Some(hint) = space_hint(cmd, &text) {
        stderr.push('\n');
        stderr.push_str(&hint);
    }
    ToolError::Failed { command, status: out.status.to_string(), stderr }
}

/// Where a tool may write: its working directory, absolute paths among its arguments, and
/// absolute values of `KEY=/…` arguments (kbuild writes to `M=`).
fn written_paths(cmd: &Command) -> Vec<PathBuf> {
    let arg_path = |a: &std::ffi::OsStr| {
        let a = a.to_string_lossy();
        let v = if a.starts_with('/') { &a[..] } else { a.split_once('=').map_or("", |(_, v)| v) };
        v.starts_with('/').then(|| PathBuf::from(v))
    };
    cmd.get_current_dir().map(PathBuf::from).into_iter().chain(cmd.get_args().filter_map(arg_path)).collect()
}

fn space_hint(cmd: &Command, output: &str) -> Option<String> {
    if !(output.contains("No space left on device") || output.contains("Disk quota exceeded")) {
        return None;
    }
    let fullest = written_paths(cmd)
        .into_iter()
        .filter_map(|p| crate::fsutil::free_space(&p).map(|f| (f, p)))
        .min_by_key(|(f, _)| *f);
    let e = std::io::Error::from(std::io::ErrorKind::StorageFull);
    Some(match fullest {
        Some((_, p)) => crate::fsutil::describe_io_error(&e, &p, None),
        None => "no space left on a device the tool writes to".to_string(),
    })
}

/// `Command::output`, with the tool in its own process group that dies with the harness: the
/// SIGINT/SIGTERM handler kills the group (make takes its gcc and rustc children with it), and
/// PDEATHSIG kills the tool if the harness dies any other way. The calling thread waits, so
/// PDEATHSIG (tied to the spawning thread) cannot fire early. Stdin is /dev/null, as with
/// `output()`.
pub fn output(cmd: &mut Command) -> std::io::Result<Output> {
    let parent = std::process::id() as i32;
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    // SAFETY: the hook only makes async-signal-safe calls (see die_with_parent).
    unsafe { cmd.pre_exec(move || crate::vm::reaper::die_with_parent(parent)) };
    let child = cmd.spawn()?;
    let pgid = child.id() as i32;
    crate::vm::reaper::register(pgid);
    let out = child.wait_with_output();
    crate::vm::reaper::unregister(pgid);
    out
}

/// A command line as a user would type it, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// The last `n` lines of `text`, which is where build tools put the error that matters.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_that_says_the_disk_is_full_gets_the_devices_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sh");
        cmd.current_dir(dir.path()).args(["-c", "echo 'cp: error writing x: No space left on device' >&2; exit 1"]);
        let e = run_capture(&mut cmd).unwrap_err().to_string();
        assert!(e.contains("No space left on device"), "{e}");
        let said = format!("no space left on the device holding {} (", dir.path().display());
        assert!(e.contains(&said) && e.ends_with(" free)"), "{e}");
    }

    #[test]
    fn where_a_tool_writes_includes_key_value_arguments() {
        // As kbuild runs: the headers as working directory, the module dir as M=.
        let mut cmd = Command::new("make");
        cmd.current_dir("/k/headers").args(["-C", "/k/headers", "M=/cache/modules/x", "KBUILD_OUTPUT=rel", "-j2"]);
        let paths = written_paths(&cmd);
        let want: Vec<PathBuf> = ["/k/headers", "/k/headers", "/cache/modules/x"].map(PathBuf::from).into();
        assert_eq!(paths, want);
    }

    #[test]
    fn other_failures_say_nothing_of_space() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'make: *** [Makefile:2: all] Error 2' >&2; exit 2"]);
        let e = run_capture(&mut cmd).unwrap_err().to_string();
        assert!(e.contains("Error 2") && !e.contains("no space left"), "{e}");
    }

    #[test]
    fn storage_failures_are_recognised_by_their_phrases() {
        let full = crate::fsutil::describe_io_error(
            &std::io::Error::from(std::io::ErrorKind::StorageFull),
            std::path::Path::new("/x"),
            None,
        );
        assert!(crate::fsutil::names_storage_failure(&format!("kernel 6.1: writing /x: {full}")));
        let ro = crate::fsutil::describe_io_error(
            &std::io::Error::from(std::io::ErrorKind::ReadOnlyFilesystem),
            std::path::Path::new("/x"),
            None,
        );
        assert!(crate::fsutil::names_storage_failure(&ro));
        assert!(!crate::fsutil::names_storage_failure("building the reference modules: objtool failed"));
    }
}
