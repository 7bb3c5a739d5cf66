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
            for s in &plan.stages {
                for (port, srcs) in &s.inputs {
                    for src in srcs {
                        let _ = writeln!(
                            out,
                            "  \"{}\" -> \"{}\" [label=\"{} → {}\"];",
                            src.stage, s.id, src.port, port.name
                        );
                    }
                }
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for s in &plan.stages {
                let _ = writeln!(out, "  {}[\"{}<br/>({})\"]", s.id, s.id, s.type_name);
            }
            for s in &plan.stages {
                for (port, srcs) in &s.inputs {
                    for src in srcs {
                        let _ = writeln!(
                            out,
                            "  {} -- \"{} → {}\" --> {}",
                            src.stage, src.port, port.name, s.id
                        );
                    }
                }
            }
        }
    }
    out
}
