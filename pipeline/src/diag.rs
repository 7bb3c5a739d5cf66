//! Diagnostics: problems in a pipeline file, each with the place it comes from.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// A place in a source file: 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Location {
    /// The file (as the user named it), or `--set` for command-line overrides.
    pub file: Arc<str>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

impl Location {
    /// A location in `file`.
    pub fn new(file: Arc<str>, line: usize, col: usize) -> Self {
        Location { file, line, col }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// One problem found while loading or validating a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    /// Where the problem is, when it has a place.
    pub location: Option<Location>,
    /// The stage it concerns, if any.
    pub stage: Option<String>,
    /// What is wrong, in one sentence.
    pub message: String,
    /// How to fix it (e.g. "did you mean `split`?").
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at `location`.
    pub fn error(location: Option<Location>, message: String) -> Self {
        Diagnostic {
            location,
            stage: None,
            message,
            help: None,
        }
    }

    /// Attaches the stage id.
    pub fn in_stage(mut self, stage: &str) -> Self {
        self.stage = Some(stage.to_string());
        self
    }

    /// Attaches a hint.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Renders the diagnostic with the offending source line and a caret,
    /// when the source is at hand.
    pub fn render(&self, source: Option<&str>) -> String {
        let mut out = String::new();
        if let Some(loc) = &self.location {
            out.push_str(&format!("{loc}: "));
        }
        out.push_str("error");
        if let Some(stage) = &self.stage {
            out.push_str(&format!(" in stage `{stage}`"));
        }
        out.push_str(&format!(": {}", self.message));
        if let (Some(loc), Some(src)) = (&self.location, source)
            && let Some(line) = src.lines().nth(loc.line.saturating_sub(1))
        {
            let gutter = loc.line.to_string();
            let pad = " ".repeat(gutter.len());
            let caret_pad: String = line
                .chars()
                .take(loc.col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!(
                "\n {pad} |\n {gutter} | {line}\n {pad} | {caret_pad}^"
            ));
        }
        if let Some(help) = &self.help {
            out.push_str(&format!("\n  = help: {help}"));
        }
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(None))
    }
}

/// The closest candidate to `name`, if one is close enough to suggest.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| {
            let edits = strsim::normalized_damerau_levenshtein(name, c);
            let jw = strsim::jaro_winkler(name, c);
            (
                if edits >= 0.5 || jw > 0.8 {
                    edits.max(jw)
                } else {
                    0.0
                },
                c,
            )
        })
        .filter(|(score, _)| *score > 0.0)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_points_at_the_column() {
        let d = Diagnostic::error(Some(Location::new("p.yaml".into(), 2, 5)), "bad".into())
            .in_stage("gen")
            .with_help("fix it");
        let text = d.render(Some("a: 1\nb:  xx\n"));
        assert!(
            text.starts_with("p.yaml:2:5: error in stage `gen`: bad"),
            "{text}"
        );
        assert!(text.contains(" 2 | b:  xx\n   |     ^"), "{text}");
        assert!(text.ends_with("= help: fix it"));
    }

    #[test]
    fn suggestions_need_to_be_close() {
        assert_eq!(did_you_mean("splt", ["split", "export"]), Some("split"));
        assert_eq!(did_you_mean("zzzz", ["split", "export"]), None);
    }
}
