//! What a stage may check of its place in the DAG, at validate time.
//!
//! A stage sees its parameters when built and its artifacts when run; some
//! checks need neither but the graph: `report` refuses a gate on a metric that
//! no input reports, `rebalance` refuses rows that come only from a split's
//! held-out ports. The planner calls [`Stage::check_wiring`] on every built
//! stage once every input is resolved, so `gigo validate` catches these
//! before any data is read. `pipeline/` still knows no stage type: the
//! stages interpret type names and metric names themselves.
//!
//! [`Stage::check_wiring`]: crate::Stage::check_wiring

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::plan::Source;

/// The metrics a stage's summary section may carry (the names quality gates
/// test), declared so that a gate no input can test is refused at validate
/// time. The executor checks every section against the declaration, so a
/// declaration cannot drift from the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metrics {
    /// These names, and no others (some may be absent from a given run: a
    /// drift metric needs a reference input).
    Names(BTreeSet<String>),
    /// Not known before the run (a user's program decides).
    Any,
}

impl Metrics {
    /// The declaration of a stage that reports `names`.
    pub fn names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Metrics::Names(names.into_iter().map(String::from).collect())
    }

    /// A stage that reports no metric.
    pub fn none() -> Self {
        Metrics::Names(BTreeSet::new())
    }

    /// Whether a section of this stage may carry `metric`.
    pub fn may_report(&self, metric: &str) -> bool {
        match self {
            Metrics::Names(n) => n.contains(metric),
            Metrics::Any => true,
        }
    }
}

/// One edge into a stage.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge<'a> {
    /// The input port of the stage it feeds.
    pub input: &'a str,
    /// The upstream stage's id.
    pub stage: &'a str,
    /// The upstream stage's type.
    pub type_name: &'a str,
    /// The upstream output port.
    pub port: &'a str,
}

/// A stage of the graph, as [`Wiring`] sees it.
#[derive(Debug, Clone)]
pub(crate) struct WiredStage {
    pub type_name: String,
    /// `Any` for a stage that failed to build: nothing is refused because of
    /// a stage whose own problems are already reported.
    pub metrics: Metrics,
    /// Input port -> upstream ports.
    pub inputs: Vec<(String, Vec<Source>)>,
}

/// A stage's view of the validated graph: its inputs, and everything upstream.
#[derive(Debug, Clone, Copy)]
pub struct Wiring<'a> {
    id: &'a str,
    graph: &'a BTreeMap<String, WiredStage>,
}

impl<'a> Wiring<'a> {
    pub(crate) fn new(id: &'a str, graph: &'a BTreeMap<String, WiredStage>) -> Self {
        Wiring { id, graph }
    }

    /// The stage's id.
    pub fn stage(&self) -> &'a str {
        self.id
    }

    /// The edges into stage `id`, in port order.
    fn edges_into(&self, id: &str) -> Vec<Edge<'a>> {
        let Some(node) = self.graph.get(id) else {
            return Vec::new();
        };
        node.inputs
            .iter()
            .flat_map(|(input, sources)| {
                sources.iter().filter_map(move |s| {
                    let up = self.graph.get(&s.stage)?;
                    Some(Edge {
                        input,
                        stage: &s.stage,
                        type_name: &up.type_name,
                        port: &s.port,
                    })
                })
            })
            .collect()
    }

    /// The edges into this stage, in port order.
    pub fn inputs(&self) -> Vec<Edge<'a>> {
        self.edges_into(self.id)
    }

    /// The metrics stage `id` declares (`Any` for an unknown id).
    pub fn metrics_of(&self, id: &str) -> &'a Metrics {
        static ANY: Metrics = Metrics::Any;
        self.graph.get(id).map_or(&ANY, |n| &n.metrics)
    }

    /// Walks upstream from this stage and returns, for every path, the first
    /// edge whose upstream stage satisfies `stop` (the walk goes no further
    /// along that path); paths that never meet such a stage contribute
    /// nothing. Sorted, without repeats; safe on a graph with cycles.
    pub fn first_upstream(&self, stop: impl Fn(&Edge) -> bool) -> Vec<Edge<'a>> {
        let mut found = BTreeSet::new();
        let mut seen: BTreeSet<&str> = BTreeSet::from([self.id]);
        let mut queue = VecDeque::from([self.id]);
        while let Some(id) = queue.pop_front() {
            for e in self.edges_into(id) {
                if stop(&e) {
                    found.insert(e);
                } else if seen.insert(e.stage) {
                    queue.push_back(e.stage);
                }
            }
        }
        found.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(type_name: &str, inputs: &[(&str, &[&str])]) -> WiredStage {
        WiredStage {
            type_name: type_name.into(),
            metrics: Metrics::none(),
            inputs: inputs
                .iter()
                .map(|(p, srcs)| {
                    let srcs = srcs
                        .iter()
                        .map(|s| {
                            let (stage, port) = s.split_once('.').unwrap();
                            Source {
                                stage: stage.into(),
                                port: port.into(),
                            }
                        })
                        .collect();
                    (p.to_string(), srcs)
                })
                .collect(),
        }
    }

    #[test]
    fn first_upstream_stops_at_the_first_match_on_every_path_and_survives_cycles() {
        let graph: BTreeMap<String, WiredStage> = [
            ("data", node("generate", &[])),
            ("split", node("split", &[("table", &["data.table"])])),
            ("prof", node("profile", &[("table", &["split.test"])])),
            (
                "both",
                node(
                    "concat",
                    &[("tables", &["prof.table", "split.valid", "data.table"])],
                ),
            ),
            ("a", node("x", &[("t", &["b.out"])])),
            ("b", node("x", &[("t", &["a.out"])])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let w = Wiring::new("both", &graph);
        let found: Vec<String> = w
            .first_upstream(|e| e.type_name == "split")
            .iter()
            .map(|e| format!("{}.{}", e.stage, e.port))
            .collect();
        assert_eq!(found, ["split.test", "split.valid"]);
        assert_eq!(w.inputs().len(), 3);
        assert_eq!(w.inputs()[0].type_name, "profile");
        // a cycle ends the walk instead of looping
        assert!(
            Wiring::new("a", &graph)
                .first_upstream(|e| e.type_name == "split")
                .is_empty()
        );
        assert!(Metrics::Any.may_report("anything"));
        assert!(!Metrics::names(["rows"]).may_report("row"));
        assert!(w.metrics_of("nowhere").may_report("x"));
    }
}
