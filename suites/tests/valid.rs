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
