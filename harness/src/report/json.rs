//! `report.json` (schema `klp-conform.report.v1`), written atomically.

use std::path::Path;

use crate::fsutil::write_atomic;
use crate::report::model::Report;

pub fn write_report(report: &Report, out_dir: &Path) -> std::io::Result<()> {
    write_atomic(&out_dir.join("report.json"), render(report).as_bytes())
}

/// The text of `report.json`.
pub fn render(report: &Report) -> String {
    let mut text = serde_json::to_string_pretty(report).expect("report types always serialise");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::*;

    #[test]
    fn report_has_the_contract_shape() {
        let mut c = CaseOutcome::new("lifecycle", "remove-while-enabled", vec!["RM1".into()]);
        c.status = Status::Fail;
        c.duration_s = 1.5;
        c.failure = Some(Failure {
            step: "3: unload m".into(),
            line: Some(9),
            expected: "EAGAIN".into(),
            actual: "success".into(),
        });
        c.logs.insert("console".into(), "logs/x/console.log".into());
        let r = Report::new(vec![KernelRun {
            kernel: KernelInfo {
                spec: "debian".into(),
                release: Some("6.1.0-56-amd64".into()),
                version: Some("6.1.192-2".into()),
                config: None,
            },
            accel: "tcg".into(),
            accel_note: Some("auto: /dev/kvm unusable".into()),
            guest_start: "boot".into(),
            version_notes: Vec::new(),
            cases: vec![c],
        }]);
        let dir = tempfile::tempdir().unwrap();
        write_report(&r, dir.path()).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
        assert_eq!(v["schema"], "klp-conform.report.v1");
        let case = &v["runs"][0]["cases"][0];
        assert_eq!(case["id"], "klp_conformance.lifecycle.remove_while_enabled");
        for key in ["suite", "case", "status", "duration_s", "spec", "failure", "skip_reason", "logs"] {
            assert!(case.get(key).is_some(), "missing {key}");
        }
        assert_eq!(case["status"], "fail");
        assert_eq!(case["failure"]["expected"], "EAGAIN");
        assert_eq!(v["runs"][0]["kernel"]["release"], "6.1.0-56-amd64");
        assert_eq!(v["summary"], serde_json::json!({"pass":0,"fail":1,"skip":0,"error":0}));
    }
}
