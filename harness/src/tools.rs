//! Running host tools: find them on PATH (or say which Debian package provides them) and run
//! them with their stderr kept for the error message.

use std::path::PathBuf;
use std::process::Command;

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
    let out = cmd.output().map_err(|source| ToolError::Spawn { command: command.clone(), source })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if stderr.trim().is_empty() {
            stderr = String::from_utf8_lossy(&out.stdout).into_owned();
        }
        Err(ToolError::Failed { command, status: out.status.to_string(), stderr: tail(&stderr, 40) })
    }
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
