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
