//! Every committed suite file parses and validates.

#[test]
fn committed_suites_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../suites");
    let files = klp_conform::suite::resolve_suite_args(&[], &dir).unwrap();
    assert!(!files.is_empty());
    for f in files {
        let s = klp_conform::suite::load_suite(&f).unwrap_or_else(|e| panic!("{e}"));
        assert!(!s.cases.is_empty(), "{}", f.display());
    }
}
