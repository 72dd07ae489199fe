//! Fails when `crds/` no longer matches the Rust types.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;

const FIX: &str = "run `cargo run -p scaivault-operator --bin crdgen` and commit crds/";

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds")
}

#[test]
fn crds_match_the_rust_types() {
    let files = scaivault_operator::crd_files().expect("generate CRD YAML");
    let dir = crds_dir();
    let mut stale = Vec::new();
    for (name, want) in &files {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(have) if &have == want => {}
            Ok(_) => stale.push(format!("{} differs from the generated CRD", path.display())),
            Err(e) => stale.push(format!("{}: {e}", path.display())),
        }
    }
    assert!(stale.is_empty(), "{}\n{FIX}", stale.join("\n"));
}

#[test]
fn crds_dir_holds_only_generated_files() {
    let want: BTreeSet<String> = scaivault_operator::crd_files()
        .expect("generate CRD YAML")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let have: BTreeSet<String> = std::fs::read_dir(crds_dir())
        .expect("read crds/")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(have, want, "unexpected or missing files in crds/; {FIX}");
}

#[test]
fn generated_crds_have_the_expected_shape() {
    let crds = scaivault_operator::crds();
    let names: Vec<_> = crds
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        ["vaultsecrets.scaivault.io", "vaultpolicies.scaivault.io"]
    );
    for crd in &crds {
        assert_eq!(crd.spec.group, "scaivault.io");
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.served && version.storage);
        let sub = version.subresources.as_ref().expect("subresources");
        assert!(sub.status.is_some(), "status subresource");
        let columns: Vec<_> = version
            .additional_printer_columns
            .as_ref()
            .expect("printer columns")
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns.first(), Some(&"Ready"));
        assert_eq!(columns.last(), Some(&"Age"));
        // conditions are a list-map keyed by type
        let schema = serde_json::to_value(&version.schema).unwrap();
        let conditions =
            &schema["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map");
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"])
        );
        let cond_props = &conditions["items"]["properties"];
        assert!(cond_props["observedGeneration"].is_object());
        assert_eq!(cond_props["lastTransitionTime"]["format"], "date-time");
    }
}
