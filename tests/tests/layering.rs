//! Dependencies between Strom crates point one way, down the data flow
//! (docs/architecture.md): this test reads `cargo metadata` and fails on any
//! edge the layering does not allow.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// For each crate, the Strom crates it may depend on.
fn allowed() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let base = ["strom-protocol"];
    BTreeMap::from([
        ("strom-protocol", BTreeSet::new()),
        ("strom-alloc", BTreeSet::new()),
        ("strom-storage", BTreeSet::from(base)),
        ("strom-producer", BTreeSet::from(base)),
        ("strom-metadata", BTreeSet::from(base)),
        (
            "strom-controller",
            BTreeSet::from(["strom-protocol", "strom-metadata"]),
        ),
        (
            "strom-replica",
            BTreeSet::from([
                "strom-protocol",
                "strom-storage",
                "strom-producer",
                "strom-metadata",
            ]),
        ),
        (
            "strom-server",
            BTreeSet::from([
                "strom-protocol",
                "strom-storage",
                "strom-producer",
                "strom-metadata",
                "strom-controller",
                "strom-coordinator",
                "strom-replica",
            ]),
        ),
        (
            "strom",
            BTreeSet::from(["strom-alloc", "strom-metadata", "strom-server"]),
        ),
    ])
}

#[test]
fn dependencies_point_down_the_data_flow() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let allowed = allowed();
    let mut checked = 0;
    for package in meta["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        let Some(ok) = allowed.get(name) else {
            continue;
        };
        checked += 1;
        for dep in package["dependencies"].as_array().unwrap() {
            let dep_name = dep["name"].as_str().unwrap();
            let normal = dep["kind"].is_null();
            if dep_name.starts_with("strom") && normal {
                assert!(
                    ok.contains(dep_name),
                    "{name} must not depend on {dep_name}"
                );
            }
        }
    }
    assert_eq!(
        checked,
        allowed.len(),
        "every crate of the layering was found"
    );
}
