//! The sampling strategy: how many rows each class should have afterwards.
//!
//! Semantics follow imbalanced-learn's `sampling_strategy` (so that users
//! moving from it get the same counts), with two generalisations, both
//! documented on [`Strategy`]: a ratio works with more than two classes, and
//! a ratio that asks for nothing leaves the class alone instead of failing.

use std::collections::BTreeMap;

use gigo_pipeline::StageError;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A class as written in the parameters: YAML may give `1`, `"1"`, `true`.
/// Compared with the label's text (as the `split` stage prints it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
#[schemars(with = "ClassNameSchema")]
pub struct ClassName(pub String);

/// Schema of [`ClassName`]: a string, number or boolean.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum ClassNameSchema {
    Text(String),
    Number(f64),
    Flag(bool),
}

impl<'de> Deserialize<'de> for ClassName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(ClassName(s)),
            Value::Number(n) => Ok(ClassName(n.to_string())),
            Value::Bool(b) => Ok(ClassName(b.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "a class must be a string, number or boolean, got {other}"
            ))),
        }
    }
}

/// Which classes a named strategy resamples (imbalanced-learn's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Named {
    /// Over-samplers: every class but the majority; under-samplers and
    /// cleaners: every class but the minority.
    Auto,
    /// The smallest class only (over-samplers).
    Minority,
    /// The largest class only (under-samplers, cleaners).
    Majority,
    /// Every class but the smallest.
    NotMinority,
    /// Every class but the largest.
    NotMajority,
    /// Every class.
    All,
}

impl Named {
    fn as_str(self) -> &'static str {
        match self {
            Named::Auto => "auto",
            Named::Minority => "minority",
            Named::Majority => "majority",
            Named::NotMinority => "not_minority",
            Named::NotMajority => "not_majority",
            Named::All => "all",
        }
    }
}

/// `strategy`: which classes are resampled and to how many rows.
///
/// - a name (`auto`, `minority`, `majority`, `not_minority`, `not_majority`,
///   `all`): over-samplers bring the chosen classes up to the largest class,
///   under-samplers bring them down to the smallest, cleaners (Tomek, ENN)
///   clean only the chosen classes;
/// - a ratio `r` in (0, 1], the wanted `minority / majority` ratio:
///   over-samplers bring every class but the majority up to
///   `floor(r * n_majority)` rows, under-samplers bring every class but the
///   minority down to `floor(n_minority / r)`; a class already past that
///   target is left alone (imbalanced-learn accepts a ratio for two classes
///   only and fails instead);
/// - counts per class (`{"0": 500, "1": 500}`): the exact number of rows
///   each listed class ends with (at least its current count for
///   over-samplers, at most for under-samplers); unlisted classes are left
///   alone.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// A named set of classes.
    Named(Named),
    /// A wanted minority / majority ratio.
    Ratio(f64),
    /// Rows per class afterwards.
    Counts(BTreeMap<String, usize>),
}

/// Schema of [`Strategy`].
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum StrategySchema {
    Named(Named),
    Ratio(f64),
    Counts(BTreeMap<String, u64>),
}

impl JsonSchema for Strategy {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Strategy".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut s = StrategySchema::json_schema(generator);
        s.insert(
            "description".into(),
            "auto | minority | majority | not_minority | not_majority | all, a \
             minority/majority ratio in (0, 1], or rows per class ({\"0\": 500})"
                .into(),
        );
        s
    }
}

impl<'de> Deserialize<'de> for Strategy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(s) => serde_json::from_value::<Named>(Value::String(s.clone()))
                .map(Strategy::Named)
                .map_err(|_| {
                    D::Error::custom(format!(
                        "unknown strategy `{s}`: expected auto, minority, majority, \
                         not_minority, not_majority, all, a ratio or counts per class"
                    ))
                }),
            Value::Number(n) => n
                .as_f64()
                .map(Strategy::Ratio)
                .ok_or_else(|| D::Error::custom("the ratio is not a number")),
            Value::Object(map) => {
                let mut counts = BTreeMap::new();
                for (class, v) in map {
                    let n = v.as_u64().ok_or_else(|| {
                        D::Error::custom(format!(
                            "the count for class `{class}` must be a non-negative integer, got {v}"
                        ))
                    })?;
                    counts.insert(class, n as usize);
                }
                Ok(Strategy::Counts(counts))
            }
            other => Err(D::Error::custom(format!(
                "a strategy is a name, a ratio or counts per class, got {other}"
            ))),
        }
    }
}

/// What a method does to the classes it targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Adds rows up to a target.
    Over,
    /// Removes rows down to a target.
    Under,
    /// Removes whatever its rule finds, in the targeted classes.
    Clean,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Over => "over-sampling",
            Kind::Under => "under-sampling",
            Kind::Clean => "cleaning",
        }
    }
}

/// Problems with `strategy` that are known before seeing data (the method
/// fixes the kind), as messages.
pub fn check(strategy: &Strategy, kind: Kind) -> Vec<String> {
    let mut p = Vec::new();
    match strategy {
        Strategy::Named(Named::Majority) if kind == Kind::Over => p.push(
            "`majority` cannot be used to over-sample (it is the class others are brought up to)"
                .to_string(),
        ),
        Strategy::Named(Named::Minority) if kind != Kind::Over => p.push(format!(
            "`minority` cannot be used for {} (it is the class others are brought down to)",
            kind.word()
        )),
        Strategy::Ratio(r) if kind == Kind::Clean => p.push(format!(
            "a ratio ({r}) cannot be used for cleaning methods: they remove what their rule \
             finds; choose classes with `classes` instead"
        )),
        Strategy::Ratio(r) if !(*r > 0.0 && *r <= 1.0) => {
            p.push(format!("the ratio must be in (0, 1], got {r}"))
        }
        Strategy::Counts(_) if kind == Kind::Clean => p.push(
            "counts per class cannot be used for cleaning methods: they remove what their rule \
             finds; choose classes with `classes` instead"
                .to_string(),
        ),
        _ => {}
    }
    p
}

/// The first class with the most rows (ties: the earlier class, as
/// imbalanced-learn's `max` over sorted labels).
pub fn majority(counts: &[usize]) -> usize {
    let mut best = 0;
    for (c, &n) in counts.iter().enumerate() {
        if n > counts[best] {
            best = c;
        }
    }
    best
}

/// The first class with the fewest rows.
pub fn minority(counts: &[usize]) -> usize {
    let mut best = 0;
    for (c, &n) in counts.iter().enumerate() {
        if n < counts[best] {
            best = c;
        }
    }
    best
}

/// The class index of `name`, or an error listing the classes.
pub fn class_index(names: &[String], name: &str, what: &str) -> Result<usize, StageError> {
    names.iter().position(|n| n == name).ok_or_else(|| {
        StageError::data(format!(
            "{what} names class `{name}`, which is not in the label column (its classes: {})",
            names.join(", ")
        ))
    })
}

/// Rows each class should end with, `None` for classes left alone. For
/// [`Kind::Clean`], `Some` only marks the class as cleaned (its number is
/// the minority count, as imbalanced-learn records). `only`: the `classes`
/// parameter, restricting the targeted classes.
pub fn targets(
    strategy: &Strategy,
    kind: Kind,
    counts: &[usize],
    names: &[String],
    only: Option<&[ClassName]>,
) -> Result<Vec<Option<usize>>, StageError> {
    let k = counts.len();
    if k == 0 {
        return Ok(Vec::new());
    }
    let maj = majority(counts);
    let min = minority(counts);
    let (n_max, n_min) = (counts[maj], counts[min]);
    let mut t: Vec<Option<usize>> = vec![None; k];
    match strategy {
        Strategy::Named(named) => {
            let chosen = |c: usize| match named {
                Named::Auto => {
                    if kind == Kind::Over {
                        c != maj
                    } else {
                        c != min
                    }
                }
                Named::Minority => c == min,
                Named::Majority => c == maj,
                Named::NotMinority => c != min,
                Named::NotMajority => c != maj,
                Named::All => true,
            };
            if let Some(msg) = check(strategy, kind).into_iter().next() {
                return Err(StageError::data(format!(
                    "strategy `{}`: {msg}",
                    named.as_str()
                )));
            }
            for (c, slot) in t.iter_mut().enumerate() {
                if chosen(c) {
                    *slot = Some(if kind == Kind::Over { n_max } else { n_min });
                }
            }
        }
        Strategy::Ratio(r) => {
            if let Some(msg) = check(strategy, kind).into_iter().next() {
                return Err(StageError::data(format!("strategy: {msg}")));
            }
            for (c, slot) in t.iter_mut().enumerate() {
                if kind == Kind::Over && c != maj {
                    let target = (r * n_max as f64).floor() as usize;
                    if target > counts[c] {
                        *slot = Some(target);
                    }
                } else if kind == Kind::Under && c != min {
                    let target = (n_min as f64 / r).floor() as usize;
                    if target < counts[c] {
                        *slot = Some(target);
                    }
                }
            }
        }
        Strategy::Counts(map) => {
            if let Some(msg) = check(strategy, kind).into_iter().next() {
                return Err(StageError::data(format!("strategy: {msg}")));
            }
            for (name, &n) in map {
                let c = class_index(names, name, "strategy")?;
                match kind {
                    Kind::Over if n < counts[c] => {
                        return Err(StageError::data(format!(
                            "strategy asks for {n} rows of class `{name}`, which has {} already: \
                             an over-sampler only adds rows",
                            counts[c]
                        )));
                    }
                    Kind::Under if n > counts[c] => {
                        return Err(StageError::data(format!(
                            "strategy asks for {n} rows of class `{name}`, which has only {}: \
                             an under-sampler only removes rows",
                            counts[c]
                        )));
                    }
                    _ => t[c] = Some(n),
                }
            }
        }
    }
    if let Some(only) = only {
        let mut keep = vec![false; k];
        for name in only {
            keep[class_index(names, &name.0, "`classes`")?] = true;
        }
        for (slot, keep) in t.iter_mut().zip(keep) {
            if !keep {
                *slot = None;
            }
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(k: usize) -> Vec<String> {
        (0..k).map(|c| c.to_string()).collect()
    }

    #[test]
    fn auto_follows_imbalanced_learn() {
        let counts = [50, 10, 30];
        let n = names(3);
        let s = Strategy::Named(Named::Auto);
        assert_eq!(
            targets(&s, Kind::Over, &counts, &n, None).unwrap(),
            vec![None, Some(50), Some(50)]
        );
        assert_eq!(
            targets(&s, Kind::Under, &counts, &n, None).unwrap(),
            vec![Some(10), None, Some(10)]
        );
    }

    #[test]
    fn ratio_truncates_like_imbalanced_learn() {
        // imbalanced-learn: int(n_majority * ratio - n_class) new rows.
        let n = names(2);
        let t = targets(&Strategy::Ratio(0.55), Kind::Over, &[101, 10], &n, None).unwrap();
        assert_eq!(t, vec![None, Some(55)]);
        // under: int(n_minority / ratio) kept.
        let t = targets(&Strategy::Ratio(0.3), Kind::Under, &[101, 10], &n, None).unwrap();
        assert_eq!(t, vec![Some(33), None]);
        // a class already past the target is left alone
        let t = targets(&Strategy::Ratio(0.1), Kind::Over, &[100, 20], &n, None).unwrap();
        assert_eq!(t, vec![None, None]);
    }

    #[test]
    fn counts_and_classes_name_their_class_in_errors() {
        let n = vec!["cat".to_string(), "dog".to_string()];
        let s = Strategy::Counts([("cat".to_string(), 5)].into());
        let e = targets(&s, Kind::Over, &[10, 2], &n, None).unwrap_err();
        assert!(e.to_string().contains("class `cat`"), "{e}");
        let s = Strategy::Counts([("cow".to_string(), 5)].into());
        let e = targets(&s, Kind::Over, &[10, 2], &n, None).unwrap_err();
        assert!(e.to_string().contains("`cow`") && e.to_string().contains("cat, dog"));
        let only = [ClassName("dog".into())];
        let t = targets(
            &Strategy::Named(Named::All),
            Kind::Over,
            &[10, 2],
            &n,
            Some(&only),
        );
        assert_eq!(t.unwrap(), vec![None, Some(10)]);
    }

    #[test]
    fn ties_pick_the_first_class() {
        assert_eq!(majority(&[5, 7, 7]), 1);
        assert_eq!(minority(&[5, 3, 3]), 1);
    }

    #[test]
    fn parses_names_ratios_and_counts() {
        let s: Strategy = serde_json::from_str("\"not_minority\"").unwrap();
        assert_eq!(s, Strategy::Named(Named::NotMinority));
        let s: Strategy = serde_json::from_str("0.5").unwrap();
        assert_eq!(s, Strategy::Ratio(0.5));
        let s: Strategy = serde_json::from_str("{\"1\": 3}").unwrap();
        assert_eq!(s, Strategy::Counts([("1".to_string(), 3)].into()));
        let e = serde_json::from_str::<Strategy>("\"balanced\"").unwrap_err();
        assert!(e.to_string().contains("unknown strategy `balanced`"));
        let e = serde_json::from_str::<Strategy>("{\"1\": -3}").unwrap_err();
        assert!(e.to_string().contains("class `1`"));
        let c: Vec<ClassName> = serde_json::from_str("[1, \"a\", true]").unwrap();
        assert_eq!(c[0].0, "1");
        assert_eq!(c[2].0, "true");
    }
}
