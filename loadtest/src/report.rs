//! Writes benchmark sections into `loadtest/RESULTS.md`, each between its own markers, so a run
//! of some scenarios replaces only their figures.

use std::path::PathBuf;

fn results_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md")
}

/// Replaces (or appends) `<!-- edge_bench:NAME:start -->` … `end` for each section.
pub fn write_sections(sections: &[(String, String)]) -> anyhow::Result<()> {
    write_tool_sections("edge_bench", sections)
}

/// Replaces (or appends) `<!-- TOOL:NAME:start -->` … `end` for each section.
pub fn write_tool_sections(tool: &str, sections: &[(String, String)]) -> anyhow::Result<()> {
    let path = results_path();
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    for (name, body) in sections {
        let start = format!("<!-- {tool}:{name}:start -->");
        let end = format!("<!-- {tool}:{name}:end -->");
        let block = format!("{start}\n{}\n{end}", body.trim_end());
        match (text.find(&start), text.find(&end)) {
            (Some(s), Some(e)) if e > s => text.replace_range(s..e + end.len(), &block),
            _ => {
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push('\n');
                text.push_str(&block);
                text.push('\n');
            }
        }
    }
    std::fs::write(&path, text)?;
    Ok(())
}
