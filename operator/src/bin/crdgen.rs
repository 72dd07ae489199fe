//! Writes one YAML file per CRD into a directory (default: `crds/` of the repository).
//!
//! `crdgen [DIR]`, or `crdgen -` to print every CRD to stdout as one multi-document stream.

use std::path::PathBuf;

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let files = scaivault_operator::crd_files()?;
    let arg = std::env::args().nth(1);
    if arg.as_deref() == Some("-") {
        for (_, yaml) in &files {
            print!("---\n{yaml}");
        }
        return Ok(());
    }
    let dir = arg
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../crds")));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    for (name, yaml) in files {
        let path = dir.join(name);
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
