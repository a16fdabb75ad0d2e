//! ci/github-actions.yml and ci/gitlab-ci.yml: valid YAML whose kernel matrix is the pinned one
//! (images/kernels.yaml), whose shards run the nextest conformance tests with as many
//! partitions as the matrix lists, and whose merge job runs `report merge`.

use serde_json::Value;

fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn load(rel: &str) -> (Value, String) {
    let text = std::fs::read_to_string(workspace().join(rel)).unwrap();
    let v: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"));
    (v, text)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().map(String::from).unwrap_or_else(|| x.to_string())).collect()
}

fn matrix() -> Vec<String> {
    klp_conform::kernel::Pins::load_workspace(&workspace()).unwrap().matrix
}

#[test]
fn github_actions_runs_the_pinned_matrix_in_partitions_and_merges() {
    let (v, text) = load("ci/github-actions.yml");
    let m = &v["jobs"]["shard"]["strategy"]["matrix"];
    assert_eq!(strings(&m["kernel"]), matrix());
    let parts = strings(&m["partition"]);
    assert!(text.contains("cargo nextest run -p klp-conform-suites"), "{text}");
    assert!(text.contains(&format!("--partition count:${{{{ matrix.partition }}}}/{}", parts.len())), "{text}");
    assert_eq!(parts, (1..=parts.len()).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(v["jobs"]["merge"]["needs"], "shard");
    assert!(text.contains("cargo xtask report merge"), "{text}");
}

#[test]
fn gitlab_ci_runs_the_pinned_matrix_in_partitions_and_merges() {
    let (v, text) = load("ci/gitlab-ci.yml");
    let m = &v["conformance"]["parallel"]["matrix"][0];
    assert_eq!(strings(&m["KLP_CONFORM_KERNELS"]), matrix());
    let parts = strings(&m["PARTITION"]);
    assert_eq!(v["variables"]["PARTITIONS"], parts.len().to_string());
    assert_eq!(parts, (1..=parts.len()).map(|i| i.to_string()).collect::<Vec<_>>());
    assert!(text.contains("cargo nextest run -p klp-conform-suites"), "{text}");
    assert!(text.contains("cargo xtask report merge"), "{text}");
    assert_eq!(v["merge"]["artifacts"]["reports"]["junit"], "merged/junit.xml");
}
