//! Every committed suite file parses and validates.

#[test]
fn committed_suites_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    let files = klp_conform::suite::resolve_suite_args(&[], &dir).unwrap();
    assert!(!files.is_empty());
    for f in files {
        let s = klp_conform::suite::load_suite(&f).unwrap_or_else(|e| panic!("{e}"));
        assert!(!s.cases.is_empty(), "{}", f.display());
    }
}

#[test]
fn every_cited_spec_id_exists() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let spec = klp_conform::suite::spec::SpecIds::load(&root.join("suites/spec/ids.yaml")).unwrap();
    for f in klp_conform::suite::resolve_suite_args(&[], &root.join("suites")).unwrap() {
        let s = klp_conform::suite::load_suite(&f).unwrap();
        for c in &s.cases {
            for id in c.spec_ids() {
                assert!(spec.contains(&id), "{}: case {} cites unknown SPEC id {id}", f.display(), c.name());
            }
        }
    }
}

#[test]
fn version_notes_name_real_ids_and_ranges() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let spec = klp_conform::suite::spec::SpecIds::load(&root.join("suites/spec/ids.yaml")).unwrap();
    let notes = klp_conform::suite::spec::VersionNotes::load(&root.join("suites/spec/versions.yaml")).unwrap();
    assert!(!notes.notes.is_empty());
    for n in &notes.notes {
        assert!(spec.contains(&n.id), "version note on unknown SPEC id {}", n.id);
        assert!(!n.source.trim().is_empty() && !n.change.trim().is_empty(), "note on {} needs change and source", n.id);
    }
    // 6.1 itself is the baseline: no note may apply to the 6.1 kernels the spec was read on.
    let v61 = klp_conform::suite::KernelVersion::parse("6.1.192").unwrap();
    assert!(notes.applying_to(v61).is_empty(), "{:?}", notes.applying_to(v61));
    let v510 = klp_conform::suite::KernelVersion::parse("5.10.262").unwrap();
    assert!(notes.applying_to(v510).iter().any(|n| n.id == "F4"));
}

#[test]
fn equivalent_mutants_must_name_a_mutant_of_their_case() {
    let head = "version: 1\nsuite: s\ncases:\n  - name: c\n    spec: [L1]\n";
    let steps = "    steps:\n      - load: klp_ref_cmdline\n      - read: {path: /proc/cmdline, equals: \"x\"}\n";
    let parse = |eq: &str| {
        klp_conform::suite::parse_suite(std::path::Path::new("s.yaml"), &format!("{head}{eq}{steps}"))
            .map(|s| s.cases[0].equivalent_mutants.len())
            .map_err(|e| e.to_string())
    };
    // Steps are on lines 8 (load) and 9 (read) with one equivalent entry.
    assert_eq!(parse("    equivalent_mutants: [{id: \"9:negate\", why: \"because\"}]\n"), Ok(1));
    let e = parse("    equivalent_mutants: [{id: \"9:kmsg-missing:0\", why: \"no\"}]\n").unwrap_err();
    assert!(e.contains("has no mutant `9:kmsg-missing:0`") && e.contains("s.yaml:6"), "{e}");
    let e = parse("    equivalent_mutants: [{id: \"9:negate\"}]\n").unwrap_err();
    assert!(e.contains("why"), "{e}");
    // Every equivalent mutant of the committed suites names a real mutant (checked at load).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf();
    for f in klp_conform::suite::resolve_suite_args(&[], &dir).unwrap() {
        let s = klp_conform::suite::load_suite(&f).unwrap();
        for c in &s.cases {
            for m in &c.equivalent_mutants {
                assert!(!m.why.trim().is_empty(), "{}: {} {} needs a reason", f.display(), c.name(), m.id.value);
            }
        }
    }
}
