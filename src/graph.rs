//! `gigo graph`: the DAG as text, Graphviz DOT or Mermaid.

use std::fmt::Write;

use gigo_pipeline::Plan;

/// Output formats of `gigo graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// One line per stage with its inputs.
    Text,
    /// Graphviz DOT.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// Every edge as (upstream stage, its port, input port, consuming stage).
fn edges(plan: &Plan) -> impl Iterator<Item = (&str, &str, &str, &str)> {
    plan.stages.iter().flat_map(|s| {
        s.inputs.iter().flat_map(move |(port, srcs)| {
            srcs.iter().map(move |src| {
                (
                    src.stage.as_str(),
                    src.port.as_str(),
                    port.name.as_str(),
                    s.id.as_str(),
                )
            })
        })
    })
}

/// Renders the plan's DAG. Stage ids and port names are restricted to
/// letters, digits, `_` and `-`, so they need no quoting beyond the labels'.
pub fn render(plan: &Plan, format: GraphFormat) -> String {
    let mut out = String::new();
    match format {
        GraphFormat::Text => {
            for s in &plan.stages {
                let _ = write!(out, "{} [{}]", s.id, s.type_name);
                let ins: Vec<String> = s
                    .inputs
                    .iter()
                    .flat_map(|(port, srcs)| {
                        srcs.iter()
                            .map(move |src| format!("{}: {}.{}", port.name, src.stage, src.port))
                    })
                    .collect();
                if !ins.is_empty() {
                    let _ = write!(out, " <- {}", ins.join(", "));
                }
                out.push('\n');
            }
        }
        GraphFormat::Dot => {
            let _ = writeln!(
                out,
                "digraph \"{}\" {{",
                plan.name.replace(['"', '\\'], "_")
            );
            let _ = writeln!(out, "  rankdir=LR;\n  node [shape=box];");
            for s in &plan.stages {
                let _ = writeln!(
                    out,
                    "  \"{}\" [label=\"{}\\n({})\"];",
                    s.id, s.id, s.type_name
                );
            }
            for (from, port, to_port, to) in edges(plan) {
                let _ = writeln!(
                    out,
                    "  \"{from}\" -> \"{to}\" [label=\"{port} → {to_port}\"];"
                );
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for s in &plan.stages {
                let _ = writeln!(out, "  {}[\"{}<br/>({})\"]", s.id, s.id, s.type_name);
            }
            for (from, port, to_port, to) in edges(plan) {
                let _ = writeln!(out, "  {from} -- \"{port} → {to_port}\" --> {to}");
            }
        }
    }
    out
}
