//! `kcidb.json`: the run as a KCIDB v5 document (KernelCI's common reporting database), checked
//! in tests with the schema of the `kcidb-io` package, the reference for what KCIDB accepts.
//!
//! * one **checkout** per kernel source (a Debian source package version, or a local tree);
//! * one **build** per kernel (release + package version: the binary kernel, its flavour and
//!   config), status PASS when the harness got it ready, none when it could not;
//! * one **test** per case and kernel, path `livepatch.<suite>.<case>` (`_` for `-`), status
//!   PASS / FAIL / SKIP / ERROR as in `report.json`, with start time, duration, the console log
//!   as `log_url`, the other logs as `output_files`, what failed as `log_excerpt`, and the SPEC
//!   ids, divergence, snapshots and the logs' paths under `misc`.
//!
//! Ids are `klp_conform:<hash>` of what identifies the object (package version; release and
//! version; release, version and case id), so the same case on the same kernel has the same id
//! in every run and every shard, and KCIDB merges resubmissions instead of duplicating them.
//!
//! KCIDB wants URLs (its schema checks the `uri` format, which a relative path is not): the
//! logs' and config's paths relative to the output directory are joined to a base URL, by
//! default the output directory as a `file://` URL, or where CI publishes it
//! (`--kcidb-url-base`). The relative paths also stay in each test's `misc.logs`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use url::Url;

use super::clean_text;
use crate::report::model::{CaseOutcome, KernelRun, Report, Status};

pub const ORIGIN: &str = "klp_conform";
pub const MAJOR: u32 = 5;
/// The fields used exist since v5.0; 5.3 is the newest version `kcidb-io` knows.
pub const MINOR: u32 = 3;
/// KCIDB's limit on `log_excerpt`.
const EXCERPT_MAX: usize = 16384;

#[derive(Debug, Serialize)]
pub struct Document {
    pub version: Version,
    pub checkouts: Vec<Checkout>,
    pub builds: Vec<Build>,
    pub tests: Vec<Test>,
}

#[derive(Debug, Serialize)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

#[derive(Debug, Serialize)]
pub struct Checkout {
    pub id: String,
    pub origin: String,
    pub tree_name: String,
    pub comment: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    pub valid: bool,
    pub misc: Value,
}

#[derive(Debug, Serialize)]
pub struct Build {
    pub id: String,
    pub checkout_id: String,
    pub origin: String,
    pub comment: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    pub architecture: String,
    pub config_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    pub misc: Value,
}

#[derive(Debug, Serialize)]
pub struct Test {
    pub id: String,
    pub build_id: String,
    pub origin: String,
    pub path: String,
    pub comment: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    pub duration: f64,
    pub environment: Environment,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_excerpt: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output_files: Vec<Resource>,
    pub misc: Value,
}

#[derive(Debug, Serialize)]
pub struct Environment {
    pub comment: String,
}

#[derive(Debug, Serialize)]
pub struct Resource {
    pub name: String,
    pub url: String,
}

/// The output directory as a `file://` base URL (absolute, ending in `/`).
pub fn file_url_base(out_dir: &Path) -> std::io::Result<Url> {
    let abs = std::path::absolute(out_dir)?;
    Url::from_directory_path(&abs).map_err(|()| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{} cannot be a file URL", abs.display()))
    })
}

/// `--kcidb-url-base`: an absolute URL; a trailing `/` is added so that paths join below it.
pub fn parse_url_base(s: &str) -> Result<Url, String> {
    let with_slash = if s.ends_with('/') { s.to_string() } else { format!("{s}/") };
    Url::parse(&with_slash).map_err(|e| format!("--kcidb-url-base {s:?} is not an absolute URL: {e}"))
}

pub fn render_string(report: &Report, url_base: &Url) -> String {
    let mut s = serde_json::to_string_pretty(&render(report, url_base)).expect("KCIDB types always serialise");
    s.push('\n');
    s
}

pub fn render(report: &Report, url_base: &Url) -> Document {
    let mut checkouts: BTreeMap<String, Checkout> = BTreeMap::new();
    let mut builds: Vec<Build> = Vec::new();
    let mut tests = Vec::new();
    for run in &report.runs {
        let k = &run.kernel;
        let started = run.cases.iter().filter_map(|c| c.started_at.clone()).min();
        let local = is_local_tree(&k.spec);
        let source = match (&k.version, local) {
            (Some(v), false) => format!("debian:{v}"),
            (Some(v), true) => format!("tree:{}:{v}", k.spec),
            (None, _) => format!("unresolved:{}", k.spec),
        };
        let checkout_id = object_id(&["checkout", &source]);
        let checkout = checkouts.entry(checkout_id.clone()).or_insert_with(|| Checkout {
            id: checkout_id.clone(),
            origin: ORIGIN.into(),
            tree_name: if local { "local".into() } else { "debian".into() },
            comment: clean_text(&match (&k.version, local) {
                (Some(v), false) => format!("Debian linux source package {v}"),
                (Some(v), true) => format!("local kernel tree {} ({v})", k.spec),
                (None, _) => format!("kernel {} (could not be resolved)", k.spec),
            }),
            start_time: started.clone(),
            valid: k.version.is_some(),
            misc: compact(json!({ "package_version": k.version, "kernel_spec": k.spec })),
        });
        if started.is_some() && (checkout.start_time.is_none() || started < checkout.start_time) {
            checkout.start_time = started.clone();
        }

        let release = k.release.as_deref().unwrap_or(&k.spec);
        let version = k.version.as_deref().unwrap_or("");
        let build_id = object_id(&["build", release, version]);
        if !builds.iter().any(|b| b.id == build_id) {
            builds.push(Build {
                id: build_id.clone(),
                checkout_id: checkout_id.clone(),
                origin: ORIGIN.into(),
                comment: clean_text(&match &k.release {
                    Some(r) => format!("linux-image-{r} {version}"),
                    None => format!("kernel {} (could not be prepared)", k.spec),
                }),
                start_time: started,
                architecture: "x86_64".into(),
                config_name: config_name(k.release.as_deref(), local),
                config_url: k.config.as_deref().and_then(|c| join(url_base, c)),
                status: k.release.is_some().then_some("PASS"),
                misc: compact(json!({
                    "release": k.release,
                    "package_version": k.version,
                    "kernel_spec": k.spec,
                    "config": k.config,
                    "accel": run.accel,
                    "accel_note": run.accel_note,
                    "version_notes": run.version_notes,
                })),
            });
        }
        for c in &run.cases {
            tests.push(test(run, c, release, version, &build_id, url_base));
        }
    }
    Document {
        version: Version { major: MAJOR, minor: MINOR },
        checkouts: checkouts.into_values().collect(),
        builds,
        tests,
    }
}

fn test(run: &KernelRun, c: &CaseOutcome, release: &str, version: &str, build_id: &str, base: &Url) -> Test {
    let mut output_files = Vec::new();
    let mut log_url = None;
    for (name, rel) in &c.logs {
        let Some(url) = join(base, rel) else { continue };
        if name == "console" {
            log_url = Some(url);
        } else {
            let file = rel.rsplit('/').next().unwrap_or(name).to_string();
            output_files.push(Resource { name: file, url });
        }
    }
    Test {
        id: object_id(&["test", release, version, &c.id]),
        build_id: build_id.into(),
        origin: ORIGIN.into(),
        path: test_path(&c.id),
        comment: clean_text(&format!("{} › {}", c.suite, c.case)),
        status: match c.status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
            Status::Error => "ERROR",
        },
        start_time: c.started_at.clone(),
        duration: c.duration_s,
        environment: Environment {
            comment: format!("QEMU x86_64 guest ({}), one freshly booted guest per case", run.accel),
        },
        log_url,
        log_excerpt: excerpt(c),
        output_files,
        misc: compact(json!({
            "case_id": c.id,
            "spec": c.spec,
            "divergence": c.divergence,
            "skip_reason": c.skip_reason,
            "failure": c.failure,
            "snapshots": c.snapshots,
            "steps": c.steps,
            "logs": c.logs,
        })),
    }
}

/// KCIDB has no nulls ("data is missing" is an absent field), in `misc` either.
fn compact(mut v: Value) -> Value {
    if let Value::Object(map) = &mut v {
        map.retain(|_, x| !x.is_null());
    }
    v
}

/// `klp_conformance.<suite>.<case>` → `livepatch.<suite>.<case>`.
pub fn test_path(case_id: &str) -> String {
    let rest = case_id.strip_prefix("klp_conformance.").unwrap_or(case_id);
    format!("livepatch.{}", rest.replace('-', "_"))
}

/// `klp_conform:` and 32 hex digits of SHA-256 over the parts (NUL-separated).
pub fn object_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let hex: String = h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{ORIGIN}:{hex}")
}

/// What failed, for people scanning KCIDB: the failing step, or the error, or the skip reason.
fn excerpt(c: &CaseOutcome) -> Option<String> {
    let text = match c.status {
        Status::Pass => return None,
        Status::Fail => match &c.failure {
            Some(f) => {
                let at = f.line.map(|l| format!(" (line {l})")).unwrap_or_default();
                format!("step {}{at}\nexpected:\n{}\nactual:\n{}\n", f.step, f.expected, f.actual)
            }
            None => "failed".into(),
        },
        Status::Skip => c.skip_reason.clone().unwrap_or_default(),
        Status::Error => c.error.clone().unwrap_or_default(),
    };
    let mut text = clean_text(&text);
    if text.len() > EXCERPT_MAX {
        let mut cut = EXCERPT_MAX - 4;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n…");
    }
    (!text.is_empty()).then_some(text)
}

fn join(base: &Url, rel: &str) -> Option<String> {
    base.join(rel).ok().map(String::from)
}

fn is_local_tree(spec: &str) -> bool {
    spec.starts_with('/') || spec.starts_with('.') || spec.starts_with('~')
}

/// Debian's flavour (`amd64`, `cloud-amd64`, `rt-amd64`) from the release `6.1.0-57-rt-amd64`.
fn config_name(release: Option<&str>, local: bool) -> String {
    match release {
        Some(_) if local => "local".into(),
        Some(r) => {
            // `6.1.0-57-rt-amd64`, `6.12.95+deb12-amd64`: the flavour follows the numbers.
            let flavour: Vec<&str> = r.split('-').skip_while(|p| p.starts_with(|c: char| c.is_ascii_digit())).collect();
            if flavour.is_empty() {
                "debian".into()
            } else {
                format!("debian-{}", flavour.join("-"))
            }
        }
        None => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_ids_and_flavours() {
        assert_eq!(
            test_path("klp_conformance.lifecycle.remove_while_enabled"),
            "livepatch.lifecycle.remove_while_enabled"
        );
        assert_eq!(config_name(Some("6.1.0-57-rt-amd64"), false), "debian-rt-amd64");
        assert_eq!(config_name(Some("6.12.95+deb12-amd64"), false), "debian-amd64");
        let a = object_id(&["test", "6.1.0-57-amd64", "6.1.192-3", "klp_conformance.a.b"]);
        assert_eq!(a, object_id(&["test", "6.1.0-57-amd64", "6.1.192-3", "klp_conformance.a.b"]));
        assert_ne!(a, object_id(&["test", "6.1.0-57-amd64", "6.1.192-4", "klp_conformance.a.b"]));
        assert!(a.starts_with("klp_conform:") && a.len() == "klp_conform:".len() + 32);
    }

    #[test]
    fn url_base() {
        let b = parse_url_base("https://ci.example/runs/42").unwrap();
        assert_eq!(
            join(&b, "logs/6.1.0-57-amd64/lifecycle/x/console.log").unwrap(),
            "https://ci.example/runs/42/logs/6.1.0-57-amd64/lifecycle/x/console.log"
        );
        assert!(parse_url_base("runs/42").is_err());
        let f = file_url_base(Path::new("/tmp/out dir")).unwrap();
        assert_eq!(join(&f, "logs/a+b/console.log").unwrap(), "file:///tmp/out%20dir/logs/a+b/console.log");
    }

    #[test]
    fn ids_are_stable_and_unique_in_the_sample() {
        let r = super::super::sample::report();
        let base = parse_url_base("https://ci.example/r").unwrap();
        let a = render(&r, &base);
        let b = render(&r, &parse_url_base("file:///elsewhere").unwrap());
        let ids = |d: &Document| d.tests.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b), "ids do not depend on where the logs are");
        let mut unique = ids(&a);
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), a.tests.len());
        // One checkout per source package version, one build per kernel.
        assert_eq!(a.checkouts.len(), 2, "{:#?}", a.checkouts);
        assert_eq!(a.builds.len(), 2);
        assert!(a.tests.iter().all(|t| a.builds.iter().any(|b| b.id == t.build_id)));
        assert!(a.builds.iter().all(|b| a.checkouts.iter().any(|c| c.id == b.checkout_id)));
        let text = serde_json::to_string(&a).unwrap();
        assert!(!text.contains("null"), "no nulls anywhere: {text}");
    }
}
