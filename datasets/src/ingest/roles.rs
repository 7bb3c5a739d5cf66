//! Column roles given in `ingest`'s parameters, without a contract file:
//! `ignore` (columns dropped), `id` and `roles` (`{column: role}`), each by
//! name or glob (`true_*`).
//!
//! What can be checked without data is checked when the stage is built
//! (empty or invalid patterns, a pattern both ignored and given a role, a
//! role given to the label column); the rest when the columns are known (a
//! pattern that matches no column, a column two patterns disagree on).

use std::collections::BTreeMap;

use gigo_pipeline::{ParamProblem, Role};

use crate::error::{DatasetError, WantedBy};

/// A column name, or a glob over column names. A name is also matched
/// literally, so a column called `a[1]` can be named as it is.
#[derive(Debug, Clone)]
struct ColumnPattern {
    text: String,
    glob: Option<glob::Pattern>,
}

impl ColumnPattern {
    fn parse(text: &str) -> Result<ColumnPattern, String> {
        if text.trim().is_empty() {
            return Err("an empty column name".into());
        }
        let glob = if super::files::is_glob(text) {
            Some(
                glob::Pattern::new(text)
                    .map_err(|e| format!("`{text}` is not a valid glob pattern: {e}"))?,
            )
        } else {
            None
        };
        Ok(ColumnPattern {
            text: text.to_string(),
            glob,
        })
    }

    fn matches(&self, name: &str) -> bool {
        self.text == name || self.glob.as_ref().is_some_and(|g| g.matches(name))
    }
}

/// What a rule does to the columns it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Ignore,
    Give(Role),
}

impl Action {
    fn describe(self) -> String {
        match self {
            Action::Ignore => "ignored".into(),
            Action::Give(r) => format!("given role {r}"),
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    /// The parameter it came from: `ignore`, `id` or `roles`.
    param: &'static str,
    pattern: ColumnPattern,
    action: Action,
}

impl Rule {
    fn shown(&self) -> String {
        format!("`{}` in `{}`", self.pattern.text, self.param)
    }
}

/// Checked `ignore`, `id` and `roles` parameters.
#[derive(Debug, Clone, Default)]
pub struct ColumnRoles {
    rules: Vec<Rule>,
    label: Option<String>,
}

/// What the rules do to one file's columns.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// Columns dropped, in file order.
    pub ignored: Vec<String>,
    /// Roles given, by column.
    pub roles: BTreeMap<String, Role>,
}

impl ColumnRoles {
    /// Checks the parameters; `label` is the `label:` parameter.
    pub fn new(
        ignore: &[String],
        id: &[String],
        roles: &BTreeMap<String, Role>,
        label: Option<&str>,
    ) -> Result<ColumnRoles, Vec<ParamProblem>> {
        let mut problems = Vec::new();
        let mut rules = Vec::new();
        let mut add = |param: &'static str, path: String, text: &str, action: Action| match (
            ColumnPattern::parse(text),
            action,
        ) {
            (Err(e), _) => problems.push(ParamProblem::new(&path, e)),
            (Ok(_), Action::Give(Role::Added)) => {
                let mut p = ParamProblem::new(
                    &path,
                    format!("role `added` is for columns a stage adds, not for `{text}`"),
                );
                p.help = Some("roles: feature, label, weight, id, truth, other".into());
                problems.push(p);
            }
            (Ok(pattern), _) => rules.push(Rule {
                param,
                pattern,
                action,
            }),
        };
        for (i, t) in ignore.iter().enumerate() {
            add("ignore", format!("ignore.{i}"), t, Action::Ignore);
        }
        for (i, t) in id.iter().enumerate() {
            add("id", format!("id.{i}"), t, Action::Give(Role::Id));
        }
        for (t, &role) in roles {
            add("roles", format!("roles.{t}"), t, Action::Give(role));
        }

        // The same name or glob written twice with different meanings.
        for (i, a) in rules.iter().enumerate() {
            if let Some(b) = rules[..i]
                .iter()
                .find(|b| b.pattern.text == a.pattern.text && b.action != a.action)
            {
                problems.push(ParamProblem::new(
                    a.param,
                    format!(
                        "`{}` is both {} (in `{}`) and {} (in `{}`)",
                        a.pattern.text,
                        b.action.describe(),
                        b.param,
                        a.action.describe(),
                        a.param
                    ),
                ));
            }
        }

        // The label: `label:` or one named (not globbed) `roles` entry.
        let labelled: Vec<&Rule> = rules
            .iter()
            .filter(|r| r.action == Action::Give(Role::Label))
            .collect();
        for r in &labelled {
            if r.pattern.glob.is_some() {
                problems.push(ParamProblem::new(
                    "roles",
                    format!(
                        "role label needs one column by name, not the glob `{}`",
                        r.pattern.text
                    ),
                ));
            }
        }
        let mut label_names: Vec<&str> = labelled.iter().map(|r| r.pattern.text.as_str()).collect();
        if let Some(l) = label
            && !label_names.contains(&l)
        {
            label_names.insert(0, l);
        }
        if label_names.len() > 1 {
            problems.push(ParamProblem::new(
                "roles",
                format!(
                    "a table has one label, but {} are given it (`label:` and `roles`)",
                    label_names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if let Some(l) = label_names.first() {
            for r in &rules {
                if r.pattern.matches(l) && r.action != Action::Give(Role::Label) {
                    problems.push(ParamProblem::new(
                        r.param,
                        format!(
                            "the label column `{l}` cannot also be {} ({})",
                            r.action.describe(),
                            r.shown()
                        ),
                    ));
                }
            }
        }
        let label = label_names.first().map(|s| s.to_string());
        if problems.is_empty() {
            Ok(ColumnRoles { rules, label })
        } else {
            Err(problems)
        }
    }

    /// The label column `label:` or `roles` names.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// Applies the rules to `columns` (of the file `shown`): every rule must
    /// match a column, and no column may be matched by rules that disagree.
    pub fn resolve(&self, columns: &[String], shown: &str) -> Result<Resolved, DatasetError> {
        let mut by_column: BTreeMap<&str, &Rule> = BTreeMap::new();
        for rule in &self.rules {
            let mut matched = false;
            for c in columns.iter().filter(|c| rule.pattern.matches(c)) {
                matched = true;
                if let Some(other) = by_column.get(c.as_str())
                    && other.action != rule.action
                {
                    return Err(DatasetError::ColumnConflict {
                        file: shown.to_string(),
                        column: c.clone(),
                        problem: format!(
                            "is {} by {} and {} by {}; say one",
                            other.action.describe(),
                            other.shown(),
                            rule.action.describe(),
                            rule.shown()
                        ),
                    });
                }
                by_column.insert(c.as_str(), rule);
            }
            if !matched {
                return Err(DatasetError::MissingColumn {
                    file: shown.to_string(),
                    wanted: vec![rule.pattern.text.clone()],
                    by: WantedBy::Rule(rule.shown()),
                    columns: columns.to_vec(),
                });
            }
        }
        let mut out = Resolved::default();
        for c in columns {
            match by_column.get(c.as_str()).map(|r| r.action) {
                Some(Action::Ignore) => out.ignored.push(c.clone()),
                Some(Action::Give(role)) => {
                    out.roles.insert(c.clone(), role);
                }
                None => {}
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn build(
        ignore: &[&str],
        id: &[&str],
        roles: &[(&str, Role)],
        label: Option<&str>,
    ) -> Result<ColumnRoles, Vec<ParamProblem>> {
        let roles = roles.iter().map(|(k, r)| (k.to_string(), *r)).collect();
        ColumnRoles::new(&names(ignore), &names(id), &roles, label)
    }

    fn messages(r: Result<ColumnRoles, Vec<ParamProblem>>) -> Vec<String> {
        r.expect_err("expected problems")
            .into_iter()
            .map(|p| p.message)
            .collect()
    }

    #[test]
    fn globs_and_names_resolve_against_the_columns() {
        let r = build(
            &["true_*"],
            &["row_id"],
            &[("w", Role::Weight), ("y", Role::Label)],
            None,
        )
        .unwrap();
        assert_eq!(r.label(), Some("y"));
        let cols = names(&["row_id", "x", "true_label", "true_outlier", "w", "y"]);
        let got = r.resolve(&cols, "d.csv").unwrap();
        assert_eq!(got.ignored, ["true_label", "true_outlier"]);
        assert_eq!(got.roles["row_id"], Role::Id);
        assert_eq!(got.roles["w"], Role::Weight);
        assert!(!got.roles.contains_key("x"));
    }

    #[test]
    fn a_pattern_that_matches_nothing_is_an_error_with_a_suggestion() {
        let r = build(&["true_lable"], &[], &[], None).unwrap();
        let e = r
            .resolve(&names(&["x", "true_label"]), "d.csv")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "d.csv: `true_lable` in `ignore` matches no column; its columns are: x, true_label \
             (did you mean `true_label`?)"
        );
        let r = build(&[], &["id_*"], &[], None).unwrap();
        let e = r.resolve(&names(&["x"]), "d.csv").unwrap_err().to_string();
        assert!(
            e.starts_with("d.csv: `id_*` in `id` matches no column"),
            "{e}"
        );
    }

    #[test]
    fn conflicts_are_refused_at_build_time_where_possible() {
        let m = messages(build(&["a"], &["a"], &[], None));
        assert_eq!(
            m,
            ["`a` is both ignored (in `ignore`) and given role id (in `id`)"]
        );
        let m = messages(build(&["y*"], &[], &[], Some("y")));
        assert_eq!(
            m,
            ["the label column `y` cannot also be ignored (`y*` in `ignore`)"]
        );
        let m = messages(build(&[], &[], &[("y", Role::Feature)], Some("y")));
        assert_eq!(
            m,
            ["the label column `y` cannot also be given role feature (`y` in `roles`)"]
        );
        let m = messages(build(&[], &[], &[("z", Role::Label)], Some("y")));
        assert!(m[0].contains("one label, but `y`, `z`"), "{m:?}");
        let m = messages(build(&[], &[], &[("z*", Role::Label)], None));
        assert!(m[0].contains("not the glob `z*`"), "{m:?}");
        let m = messages(build(&[], &[], &[("z", Role::Added)], None));
        assert!(m[0].contains("role `added`"), "{m:?}");
        let m = messages(build(&["", "a[", "b"], &[], &[], None));
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[1].contains("`a[` is not a valid glob pattern"), "{m:?}");
        // The same role twice is no conflict; `label:` named again in `roles` neither.
        assert!(
            build(
                &[],
                &["a"],
                &[("a", Role::Id), ("y", Role::Label)],
                Some("y")
            )
            .is_ok()
        );
    }

    #[test]
    fn columns_matched_by_rules_that_disagree_are_errors() {
        let r = build(&["true_*"], &[], &[("true_id", Role::Id)], None).unwrap();
        let e = r
            .resolve(&names(&["true_id", "true_x"]), "d.csv")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "d.csv: column `true_id` is ignored by `true_*` in `ignore` and given role id by \
             `true_id` in `roles`; say one"
        );
    }
}
