//! Validation: from a parsed pipeline and a registry to a runnable DAG,
//! reporting every problem at once.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use crate::config::{InputSpec, PipelineSpec, PortRef};
use crate::diag::{Diagnostic, Location, did_you_mean};
use crate::registry::Registry;
use crate::stage::{PortSpec, SUMMARY_PORT, Stage};
use crate::table::PortKind;
use crate::wiring::{Metrics, WiredStage, Wiring};

/// An edge into a stage: which upstream port feeds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Upstream stage id.
    pub stage: String,
    /// Upstream output port.
    pub port: String,
}

/// A stage ready to run.
pub struct PlannedStage {
    /// Stage id.
    pub id: String,
    /// Stage type.
    pub type_name: String,
    /// Resolved parameters (as written, after overrides).
    pub params: Value,
    /// The built stage.
    pub stage: Box<dyn Stage>,
    /// Input port → upstream ports, in port order.
    pub inputs: Vec<(PortSpec, Vec<Source>)>,
    /// Output ports, the summary port last.
    pub outputs: Vec<PortSpec>,
}

/// A validated pipeline: stages in a topological order.
pub struct Plan {
    /// Pipeline name.
    pub name: String,
    /// Run seed.
    pub seed: u64,
    /// The memory budget the file sets (`memory:`), in bytes.
    pub memory: Option<u64>,
    /// The pipeline file.
    pub file: Arc<str>,
    /// Directory against which relative paths resolve.
    pub base_dir: PathBuf,
    /// Stages, each after everything it reads.
    pub stages: Vec<PlannedStage>,
}

impl Plan {
    /// The resolved configuration (after overrides) as JSON, as recorded in
    /// `run.json`.
    pub fn resolved_config(&self) -> Value {
        let stages: serde_json::Map<String, Value> = self
            .stages
            .iter()
            .map(|s| {
                let inputs: serde_json::Map<String, Value> = s
                    .inputs
                    .iter()
                    .map(|(p, srcs)| {
                        (
                            p.name.clone(),
                            Value::Array(
                                srcs.iter()
                                    .map(|src| Value::String(format!("{}.{}", src.stage, src.port)))
                                    .collect(),
                            ),
                        )
                    })
                    .collect();
                (
                    s.id.clone(),
                    serde_json::json!({"type": s.type_name, "inputs": inputs, "params": s.params}),
                )
            })
            .collect();
        serde_json::json!({"name": self.name, "seed": self.seed, "stages": stages})
    }

    /// The stage with id `id`.
    pub fn stage(&self, id: &str) -> Option<&PlannedStage> {
        self.stages.iter().find(|s| s.id == id)
    }
}

/// The summary port every stage has.
fn summary_port() -> PortSpec {
    PortSpec::aside(SUMMARY_PORT, PortKind::Summary, "the stage's JSON summary")
}

/// Checks a parsed pipeline against the registry and builds the plan.
pub fn build_plan(spec: &PipelineSpec, registry: &Registry) -> Result<Plan, Vec<Diagnostic>> {
    let mut problems = Vec::new();

    // 1. Build every stage from its parameters.
    let mut built: HashMap<&str, (Box<dyn Stage>, Value)> = HashMap::new();
    let known_ids: Vec<&str> = spec.stages.iter().map(|s| s.id.as_str()).collect();
    for s in &spec.stages {
        let Some(st) = registry.get(&s.type_name) else {
            let loc = s
                .node
                .get("type")
                .map(|t| t.loc.clone())
                .or(Some(s.loc.clone()));
            let d = Diagnostic::error(loc, format!("unknown stage type `{}`", s.type_name))
                .in_stage(&s.id);
            problems.push(match registry.suggest(&s.type_name) {
                Some(name) => d.with_help(format!("did you mean `{name}`?")),
                None => d.with_help("run `gigo stages` to list the stage types"),
            });
            continue;
        };
        let params = s.params();
        match st.build(&params) {
            Ok(stage) => {
                built.insert(s.id.as_str(), (stage, params));
            }
            Err(list) => {
                for p in list {
                    let mut d = Diagnostic::error(Some(s.param_location(&p.path)), p.message)
                        .in_stage(&s.id);
                    d.help = p.help;
                    problems.push(d);
                }
            }
        }
    }

    // 2. Resolve inputs.
    let outputs_of = |id: &str| -> Option<Vec<PortSpec>> {
        built.get(id).map(|(st, _)| {
            let mut o = st.outputs();
            o.push(summary_port());
            o
        })
    };
    let mut wiring: BTreeMap<&str, Vec<(PortSpec, Vec<Source>)>> = BTreeMap::new();
    for s in &spec.stages {
        let Some((stage, _)) = built.get(s.id.as_str()) else {
            continue;
        };
        let in_ports = stage.inputs();
        let mut assigned: Vec<(PortSpec, Vec<(Source, Location)>)> =
            in_ports.iter().map(|p| (p.clone(), Vec::new())).collect();
        // Ports that were given an input, valid or not: a bad reference is
        // reported once, not also as a missing input.
        let mut attempted = vec![false; assigned.len()];
        let resolve = |r: &PortRef, problems: &mut Vec<Diagnostic>| -> Option<(Source, PortKind)> {
            if !known_ids.contains(&r.stage.as_str()) {
                let d = Diagnostic::error(
                    Some(r.loc.clone()),
                    format!("input `{}` names no stage", r.stage),
                )
                .in_stage(&s.id);
                problems.push(match did_you_mean(&r.stage, known_ids.iter().copied()) {
                    Some(n) => d.with_help(format!("did you mean `{n}`?")),
                    None => d.with_help(format!("stages: {}", known_ids.join(", "))),
                });
                return None;
            }
            let outs = outputs_of(&r.stage)?; // upstream itself is broken: reported there
            let port = match &r.port {
                None => match outs.first() {
                    Some(p) => p.clone(),
                    None => return None,
                },
                Some(name) => match outs.iter().find(|p| &p.name == name) {
                    Some(p) => p.clone(),
                    None => {
                        let names: Vec<&str> = outs.iter().map(|p| p.name.as_str()).collect();
                        problems.push(
                            Diagnostic::error(
                                Some(r.loc.clone()),
                                format!("stage `{}` has no output port `{name}`", r.stage),
                            )
                            .in_stage(&s.id)
                            .with_help(
                                match did_you_mean(name, names.iter().copied()) {
                                    Some(n) => format!("did you mean `{}.{n}`?", r.stage),
                                    None => format!("its ports: {}", names.join(", ")),
                                },
                            ),
                        );
                        return None;
                    }
                },
            };
            Some((
                Source {
                    stage: r.stage.clone(),
                    port: port.name,
                },
                port.kind,
            ))
        };
        let kind_check = |port: &PortSpec,
                          src: &Source,
                          kind: PortKind,
                          loc: &Location,
                          problems: &mut Vec<Diagnostic>| {
            if port.kind != kind {
                problems.push(
                    Diagnostic::error(
                        Some(loc.clone()),
                        format!(
                            "input port `{}` expects a {}, but `{}.{}` is a {}",
                            port.name, port.kind, src.stage, src.port, kind
                        ),
                    )
                    .in_stage(&s.id),
                );
                false
            } else {
                true
            }
        };
        match &s.inputs {
            InputSpec::Positional(refs) => {
                let mut slot = 0usize;
                for r in refs {
                    // Past the declared ports, a trailing `many` port takes the rest.
                    let target = if slot < assigned.len() {
                        Some(slot)
                    } else if assigned.last().is_some_and(|(p, _)| p.many) {
                        Some(assigned.len() - 1)
                    } else {
                        None
                    };
                    let Some(t) = target else {
                        let names: Vec<&str> = in_ports.iter().map(|p| p.name.as_str()).collect();
                        problems.push(
                            Diagnostic::error(
                                Some(r.loc.clone()),
                                format!(
                                    "too many inputs: stage type `{}` takes {} ({})",
                                    s.type_name,
                                    in_ports.len(),
                                    if names.is_empty() {
                                        "none".to_string()
                                    } else {
                                        names.join(", ")
                                    }
                                ),
                            )
                            .in_stage(&s.id),
                        );
                        break;
                    };
                    attempted[t] = true;
                    if let Some((src, kind)) = resolve(r, &mut problems)
                        && kind_check(&assigned[t].0, &src, kind, &r.loc, &mut problems)
                    {
                        assigned[t].1.push((src, r.loc.clone()));
                    }
                    if !assigned[t].0.many {
                        slot += 1;
                    }
                }
            }
            InputSpec::Named(entries) => {
                for (name, loc, refs) in entries {
                    let Some(t) = assigned.iter().position(|(p, _)| &p.name == name) else {
                        // The misnamed port is reported; do not report its
                        // intended port as missing too.
                        attempted.iter_mut().for_each(|a| *a = true);
                        let names: Vec<&str> = in_ports.iter().map(|p| p.name.as_str()).collect();
                        problems.push(
                            Diagnostic::error(
                                Some(loc.clone()),
                                format!("stage type `{}` has no input port `{name}`", s.type_name),
                            )
                            .in_stage(&s.id)
                            .with_help(
                                match did_you_mean(name, names.iter().copied()) {
                                    Some(n) => format!("did you mean `{n}`?"),
                                    None => format!(
                                        "its input ports: {}",
                                        if names.is_empty() {
                                            "none".to_string()
                                        } else {
                                            names.join(", ")
                                        }
                                    ),
                                },
                            ),
                        );
                        continue;
                    };
                    if refs.len() > 1 && !assigned[t].0.many {
                        problems.push(
                            Diagnostic::error(
                                Some(loc.clone()),
                                format!(
                                    "input port `{name}` takes one input, found {}",
                                    refs.len()
                                ),
                            )
                            .in_stage(&s.id),
                        );
                        continue;
                    }
                    attempted[t] = true;
                    for r in refs {
                        if let Some((src, kind)) = resolve(r, &mut problems)
                            && kind_check(&assigned[t].0, &src, kind, &r.loc, &mut problems)
                        {
                            assigned[t].1.push((src, r.loc.clone()));
                        }
                    }
                }
            }
        }
        for ((port, srcs), tried) in assigned.iter().zip(&attempted) {
            if srcs.is_empty() && !port.optional && !tried {
                let loc = s
                    .node
                    .key_location("inputs")
                    .cloned()
                    .unwrap_or(s.loc.clone());
                problems.push(
                    Diagnostic::error(
                        Some(loc),
                        format!(
                            "missing input: port `{}` ({}) is not connected",
                            port.name, port.kind
                        ),
                    )
                    .in_stage(&s.id)
                    .with_help(format!("add `inputs: {{{}: <stage>[.<port>]}}`", port.name)),
                );
            }
        }
        wiring.insert(
            s.id.as_str(),
            assigned
                .into_iter()
                .map(|(p, srcs)| (p, srcs.into_iter().map(|(s, _)| s).collect()))
                .collect(),
        );
    }

    // 3. Cycles (over every edge whose ends are stages, built or not).
    let order: Vec<&str> = spec.stages.iter().map(|s| s.id.as_str()).collect();
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in &spec.stages {
        let refs: Vec<&PortRef> = match &s.inputs {
            InputSpec::Positional(r) => r.iter().collect(),
            InputSpec::Named(n) => n.iter().flat_map(|(_, _, r)| r.iter()).collect(),
        };
        let ups: Vec<&str> = refs
            .iter()
            .map(|r| r.stage.as_str())
            .filter(|u| known_ids.contains(u))
            .collect();
        edges.insert(s.id.as_str(), ups);
    }
    for cycle in find_cycles(&order, &edges) {
        let loc = spec
            .stages
            .iter()
            .find(|s| s.id == cycle[0])
            .map(|s| s.loc.clone());
        problems.push(Diagnostic::error(
            loc,
            format!("cycle in the pipeline: {}", cycle.join(" -> ")),
        ));
    }

    // 4. Each stage's checks of its place in the graph.
    let graph: BTreeMap<String, WiredStage> = spec
        .stages
        .iter()
        .map(|s| {
            let built_stage = built.get(s.id.as_str()).map(|(st, _)| st);
            let node = WiredStage {
                type_name: s.type_name.clone(),
                metrics: built_stage.map_or(Metrics::Any, |st| st.metrics()),
                inputs: wiring
                    .get(s.id.as_str())
                    .map(|ports| {
                        ports
                            .iter()
                            .map(|(p, srcs)| (p.name.clone(), srcs.clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            (s.id.clone(), node)
        })
        .collect();
    for s in &spec.stages {
        let Some((stage, _)) = built.get(s.id.as_str()) else {
            continue;
        };
        for p in stage.check_wiring(&Wiring::new(&s.id, &graph)) {
            let mut d =
                Diagnostic::error(Some(s.param_location(&p.path)), p.message).in_stage(&s.id);
            d.help = p.help;
            problems.push(d);
        }
    }

    if !problems.is_empty() {
        return Err(problems);
    }

    // 5. Topological order, stable with respect to file order.
    let topo = topo_order(&order, &edges);
    let mut stages = Vec::new();
    for id in topo {
        let s = spec.stages.iter().find(|s| s.id == id).ok_or_else(|| {
            vec![Diagnostic::error(
                None,
                format!("internal error: lost stage {id}"),
            )]
        })?;
        let (stage, params) = built.remove(id).ok_or_else(|| {
            vec![Diagnostic::error(
                None,
                format!("internal error: stage {id} not built"),
            )]
        })?;
        let mut outputs = stage.outputs();
        outputs.push(summary_port());
        stages.push(PlannedStage {
            id: s.id.clone(),
            type_name: s.type_name.clone(),
            params,
            inputs: wiring.remove(id).unwrap_or_default(),
            outputs,
            stage,
        });
    }
    Ok(Plan {
        name: spec.name.clone(),
        seed: spec.seed,
        memory: spec.memory,
        file: spec.file.clone(),
        base_dir: spec.base_dir.clone(),
        stages,
    })
}

/// Every elementary cycle found by a depth-first search (each reported once,
/// starting from the stage that comes first in the file).
pub fn find_cycles<'a>(
    order: &[&'a str],
    edges: &BTreeMap<&'a str, Vec<&'a str>>,
) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut mark: HashMap<&str, Mark> = order.iter().map(|s| (*s, Mark::New)).collect();
    let mut cycles = Vec::new();
    fn visit<'a>(
        n: &'a str,
        order: &[&'a str],
        edges: &BTreeMap<&'a str, Vec<&'a str>>,
        mark: &mut HashMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
        cycles: &mut Vec<Vec<String>>,
    ) {
        mark.insert(n, Mark::Active);
        stack.push(n);
        // Edges point upstream (a stage reads from these); walk them.
        for &up in edges.get(n).map(Vec::as_slice).unwrap_or(&[]) {
            match mark.get(up).copied().unwrap_or(Mark::Done) {
                Mark::New => visit(up, order, edges, mark, stack, cycles),
                Mark::Active => {
                    let start = stack.iter().position(|s| *s == up).unwrap_or(0);
                    // Print in data-flow direction: producer -> consumer.
                    let mut c: Vec<String> =
                        stack[start..].iter().rev().map(|s| s.to_string()).collect();
                    // Start at the stage that comes first in the file.
                    if let Some(first) = (0..c.len()).min_by_key(|&i| {
                        order.iter().position(|o| *o == c[i]).unwrap_or(usize::MAX)
                    }) {
                        c.rotate_left(first);
                    }
                    c.push(c[0].clone());
                    cycles.push(c);
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        mark.insert(n, Mark::Done);
    }
    for &n in order {
        if mark.get(n) == Some(&Mark::New) {
            visit(n, order, edges, &mut mark, &mut Vec::new(), &mut cycles);
        }
    }
    cycles
}

/// Kahn's algorithm, taking ready stages in file order. Assumes no cycle.
pub fn topo_order<'a>(order: &[&'a str], edges: &BTreeMap<&'a str, Vec<&'a str>>) -> Vec<&'a str> {
    let mut done: Vec<&str> = Vec::new();
    while done.len() < order.len() {
        let next = order.iter().find(|n| {
            !done.contains(n)
                && edges
                    .get(*n)
                    .map(|ups| ups.iter().all(|u| done.contains(u)))
                    .unwrap_or(true)
        });
        match next {
            Some(n) => done.push(n),
            None => break, // a cycle: reported by find_cycles
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn edges<'a>(
        pairs: &[(&'a str, &'a str)],
        order: &[&'a str],
    ) -> BTreeMap<&'a str, Vec<&'a str>> {
        let mut e: BTreeMap<&str, Vec<&str>> = order.iter().map(|n| (*n, Vec::new())).collect();
        for (consumer, producer) in pairs {
            e.entry(consumer).or_default().push(producer);
        }
        e
    }

    #[test]
    fn cycle_path_is_printed_in_flow_order() {
        let order = ["a", "b", "c"];
        let e = edges(&[("a", "c"), ("b", "a"), ("c", "b")], &order);
        let cycles = find_cycles(&order, &e);
        assert_eq!(cycles, vec![vec!["a", "b", "c", "a"]]);
    }

    proptest! {
        // Edges only from later to earlier stages (in a random order) make a DAG:
        // no cycle is found and the topological order respects every edge.
        #[test]
        fn dags_are_accepted_and_ordered(n in 1usize..12, raw in proptest::collection::vec((0usize..12, 0usize..12), 0..30)) {
            let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
            let order: Vec<&str> = names.iter().map(String::as_str).collect();
            let pairs: Vec<(&str, &str)> = raw.iter()
                .map(|(a, b)| (a % n, b % n))
                .filter(|(a, b)| a > b)
                .map(|(a, b)| (order[a], order[b]))
                .collect();
            let e = edges(&pairs, &order);
            prop_assert!(find_cycles(&order, &e).is_empty());
            let topo = topo_order(&order, &e);
            prop_assert_eq!(topo.len(), n);
            for (consumer, producer) in &pairs {
                let ci = topo.iter().position(|x| x == consumer).unwrap();
                let pi = topo.iter().position(|x| x == producer).unwrap();
                prop_assert!(pi < ci);
            }
        }

        // Adding one back edge that closes a path makes a cycle that is found.
        #[test]
        fn a_closed_chain_is_a_cycle(n in 2usize..10) {
            let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
            let order: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut pairs: Vec<(&str, &str)> = (1..n).map(|i| (order[i], order[i - 1])).collect();
            pairs.push((order[0], order[n - 1]));
            let e = edges(&pairs, &order);
            let cycles = find_cycles(&order, &e);
            prop_assert_eq!(cycles.len(), 1);
            prop_assert_eq!(cycles[0].len(), n + 1);
        }
    }
}
