//! Where in the YAML text a serde error points, as a dotted key path.

/// The dotted key path of the block-style YAML entry on a line (1-based), found by
/// walking up to each less-indented key. With `parent`, the path of the mapping that
/// holds the line (for "missing field" errors, which point at the mapping).
pub(super) fn key_path_at(text: &str, line: u64, parent: bool) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let index = usize::try_from(line).ok()?.checked_sub(1)?;
    let key_of = |l: &str| -> Option<(usize, String)> {
        let trimmed = l.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return None;
        }
        let indent = l.len() - trimmed.len();
        let entry = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        let (key, _) = entry.split_once(':')?;
        let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
        (!key.is_empty() && !key.contains(' ')).then(|| (indent, key.to_owned()))
    };
    let (mut indent, first) = key_of(lines.get(index)?)?;
    let mut path = if parent { Vec::new() } else { vec![first] };
    for l in lines[..index].iter().rev() {
        if let Some((i, key)) = key_of(l)
            && i < indent
        {
            path.push(key);
            indent = i;
        }
    }
    path.reverse();
    (!path.is_empty()).then(|| path.join("."))
}
