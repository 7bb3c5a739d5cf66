//! A YAML tree that remembers where every value came from.
//!
//! Pipeline files and dataset contracts are parsed with `saphyr-parser` (the
//! maintained YAML 1.2 parser that `serde-saphyr` is built on) into [`Node`]s
//! carrying line and column. Parameters are then deserialised from the tree's
//! JSON form, and any error is mapped back to the node it came from, so every
//! message names file, line and column. Duplicate keys are reported, never
//! silently overwritten.

use std::collections::HashMap;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, SpannedEventReceiver};
use serde_json::Value;

use crate::diag::{Diagnostic, Location};

/// How many nodes all aliases together may expand to. Expanding `*a` copies
/// the anchored node, so a few lines of nested aliases ("billion laughs")
/// would otherwise grow exponentially.
pub const MAX_ALIAS_NODES: usize = 100_000;

/// A YAML value with the location it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: NodeValue,
    /// Where it starts in the source.
    pub loc: Location,
}

/// The value of a [`Node`], resolved with the YAML 1.2 core schema.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    /// `null`, `~` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float (including `.inf` and `.nan`).
    Float(f64),
    /// A string (quoted, or plain and not any of the above).
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order. Keys are nodes so that their location is kept.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// Builds a node at `loc`.
    pub fn new(value: NodeValue, loc: Location) -> Self {
        Node { value, loc }
    }

    /// The string, if this node is one.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The entries, if this node is a mapping.
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            NodeValue::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Looks up a key of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.key_text().as_deref() == Some(key))
            .map(|(_, v)| v)
    }

    /// A mapping key as text (scalars only).
    pub fn key_text(&self) -> Option<String> {
        match &self.value {
            NodeValue::Str(s) => Some(s.clone()),
            NodeValue::Int(i) => Some(i.to_string()),
            NodeValue::Float(f) => Some(f.to_string()),
            NodeValue::Bool(b) => Some(b.to_string()),
            NodeValue::Null => Some("null".into()),
            _ => None,
        }
    }

    /// A short name of the node's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) => "an integer",
            NodeValue::Float(_) => "a float",
            NodeValue::Str(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }

    /// The JSON form of this node (what parameters are deserialised from).
    /// Non-finite floats become strings, as JSON has no place for them.
    pub fn to_json(&self) -> Value {
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::from(*i),
            NodeValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(f.to_string())),
            NodeValue::Str(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => Value::Object(
                entries
                    .iter()
                    .filter_map(|(k, v)| Some((k.key_text()?, v.to_json())))
                    .collect(),
            ),
        }
    }

    /// The node at a path of mapping keys and sequence indices, or the deepest
    /// node along it that exists (so an error about a missing field points at
    /// the mapping that lacks it).
    pub fn locate(&self, path: &[String]) -> &Node {
        let mut node = self;
        for segment in path {
            let next = match &node.value {
                NodeValue::Map(entries) => entries
                    .iter()
                    .find(|(k, _)| k.key_text().as_deref() == Some(segment.as_str()))
                    .map(|(_, v)| v),
                NodeValue::Seq(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }

    /// Location of the key `segment` inside this mapping, if present.
    pub fn key_location(&self, segment: &str) -> Option<&Location> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.key_text().as_deref() == Some(segment))
            .map(|(k, _)| &k.loc)
    }
}

/// Parses one YAML document. `file` names the source in locations.
///
/// Errors (syntax, duplicate keys, several documents) are all returned; a
/// syntax error stops parsing, since nothing after it can be trusted.
pub fn parse(source: &str, file: &Arc<str>) -> Result<Node, Vec<Diagnostic>> {
    let mut builder = TreeBuilder {
        file: file.clone(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        documents: Vec::new(),
        problems: Vec::new(),
        alias_nodes: 0,
    };
    let mut parser = Parser::new_from_str(source);
    if let Err(e) = parser.load(&mut builder, true) {
        let m = e.marker();
        let loc = Location::new(file.clone(), m.line(), m.col() + 1);
        return Err(vec![Diagnostic::error(
            Some(loc),
            format!("YAML syntax error: {}", e.info()),
        )]);
    }
    let mut problems = builder.problems;
    let mut docs = builder.documents;
    for doc in &docs {
        find_duplicate_keys(doc, &mut Vec::new(), &mut problems);
    }
    if docs.len() > 1 {
        problems.push(Diagnostic::error(
            Some(docs[1].loc.clone()),
            "expected one YAML document, found several (remove the `---` separators)".into(),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(docs
        .pop()
        .unwrap_or_else(|| Node::new(NodeValue::Null, Location::new(file.clone(), 1, 1))))
}

/// Reports every key that appears twice in one mapping. Keys of the top-level
/// `stages` mapping are stage ids, and are called so.
fn find_duplicate_keys(node: &Node, path: &mut Vec<String>, problems: &mut Vec<Diagnostic>) {
    match &node.value {
        NodeValue::Map(entries) => {
            for (i, (key, value)) in entries.iter().enumerate() {
                let text = key.key_text().unwrap_or_default();
                if let Some((first, _)) = entries[..i]
                    .iter()
                    .find(|(k, _)| k.key_text().as_deref() == Some(text.as_str()))
                {
                    let what = if path.len() == 1 && path[0] == "stages" {
                        "stage id"
                    } else {
                        "key"
                    };
                    problems.push(Diagnostic::error(
                        Some(key.loc.clone()),
                        format!(
                            "duplicate {what} `{text}` (first defined at line {})",
                            first.loc.line
                        ),
                    ));
                    continue;
                }
                path.push(text);
                find_duplicate_keys(value, path, problems);
                path.pop();
            }
        }
        NodeValue::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(i.to_string());
                find_duplicate_keys(item, path, problems);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Resolves a scalar with the YAML 1.2 core schema.
pub fn resolve_scalar(text: &str, style: ScalarStyle) -> NodeValue {
    if style != ScalarStyle::Plain {
        return NodeValue::Str(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return NodeValue::Null,
        "true" | "True" | "TRUE" => return NodeValue::Bool(true),
        "false" | "False" | "FALSE" => return NodeValue::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return NodeValue::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return NodeValue::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return NodeValue::Float(f64::NAN),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(i) = text.parse::<i64>()
    {
        return NodeValue::Int(i);
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return NodeValue::Int(i);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return NodeValue::Int(i);
    }
    let looks_numeric = digits
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if looks_numeric && let Ok(f) = text.parse::<f64>() {
        return NodeValue::Float(f);
    }
    NodeValue::Str(text.to_string())
}

enum Frame {
    Seq(Node, Vec<Node>, usize),
    Map(Node, Vec<(Node, Node)>, Option<Node>, usize),
}

struct TreeBuilder {
    file: Arc<str>,
    stack: Vec<Frame>,
    /// Anchored nodes with their size in nodes.
    anchors: HashMap<usize, (Node, usize)>,
    documents: Vec<Node>,
    problems: Vec<Diagnostic>,
    /// Nodes copied by alias expansion so far.
    alias_nodes: usize,
}

/// The number of nodes in `node`, itself included.
fn size(node: &Node) -> usize {
    1 + match &node.value {
        NodeValue::Seq(items) => items.iter().map(size).sum(),
        NodeValue::Map(entries) => entries.iter().map(|(k, v)| size(k) + size(v)).sum(),
        _ => 0,
    }
}

impl TreeBuilder {
    fn loc(&self, span: &Span) -> Location {
        Location::new(self.file.clone(), span.start.line(), span.start.col() + 1)
    }

    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), size(&node)));
        }
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Frame::Seq(_, items, _)) => items.push(node),
            Some(Frame::Map(_, entries, pending, _)) => match pending.take() {
                None => *pending = Some(node),
                Some(key) => {
                    if key.key_text().is_none() {
                        self.problems.push(Diagnostic::error(
                            Some(key.loc.clone()),
                            format!("a mapping key must be a scalar, found {}", key.type_name()),
                        ));
                        return;
                    }
                    entries.push((key, node));
                }
            },
        }
    }
}

impl<'input> SpannedEventReceiver<'input> for TreeBuilder {
    fn on_event(&mut self, ev: Event<'input>, span: Span) {
        let loc = self.loc(&span);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let node = Node::new(resolve_scalar(&text, style), loc);
                self.push_value(node, anchor);
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Frame::Seq(
                    Node::new(NodeValue::Null, loc),
                    Vec::new(),
                    anchor,
                ));
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map(
                    Node::new(NodeValue::Null, loc),
                    Vec::new(),
                    None,
                    anchor,
                ));
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(mut node, items, anchor)) = self.stack.pop() {
                    node.value = NodeValue::Seq(items);
                    self.push_value(node, anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(mut node, entries, _, anchor)) = self.stack.pop() {
                    node.value = NodeValue::Map(entries);
                    self.push_value(node, anchor);
                }
            }
            Event::Alias(id) => {
                let node = match self.anchors.get(&id) {
                    Some((n, size))
                        if self.alias_nodes.saturating_add(*size) <= MAX_ALIAS_NODES =>
                    {
                        self.alias_nodes += size;
                        Node::new(n.value.clone(), loc)
                    }
                    Some(_) => {
                        // Reported once, at the first alias over the limit.
                        if self.alias_nodes <= MAX_ALIAS_NODES {
                            self.problems.push(Diagnostic::error(
                                Some(loc.clone()),
                                format!(
                                    "aliases expand to more than {MAX_ALIAS_NODES} values: \
                                     use fewer or smaller `*` references"
                                ),
                            ));
                        }
                        self.alias_nodes = usize::MAX;
                        Node::new(NodeValue::Null, loc)
                    }
                    None => {
                        self.problems
                            .push(Diagnostic::error(Some(loc.clone()), "unknown alias".into()));
                        Node::new(NodeValue::Null, loc)
                    }
                };
                self.push_value(node, 0);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Arc<str> {
        Arc::from("t.yaml")
    }

    #[test]
    fn scalars_resolve_with_the_core_schema() {
        let n = parse(
            "a: 1\nb: 1.5\nc: true\nd: ~\ne: '1'\nf: hello\ng: -3\nh: 1e3\n",
            &file(),
        )
        .unwrap();
        let j = n.to_json();
        assert_eq!(j["a"], 1);
        assert_eq!(j["b"], 1.5);
        assert_eq!(j["c"], true);
        assert!(j["d"].is_null());
        assert_eq!(j["e"], "1");
        assert_eq!(j["f"], "hello");
        assert_eq!(j["g"], -3);
        assert_eq!(j["h"], 1000.0);
    }

    #[test]
    fn locations_are_one_based() {
        let n = parse("stages:\n  gen:\n    rows: 10\n", &file()).unwrap();
        let rows = n.locate(&["stages".into(), "gen".into(), "rows".into()]);
        assert_eq!((rows.loc.line, rows.loc.col), (3, 11));
        let key = n
            .get("stages")
            .unwrap()
            .get("gen")
            .unwrap()
            .key_location("rows")
            .unwrap();
        assert_eq!((key.line, key.col), (3, 5));
    }

    #[test]
    fn duplicate_keys_are_errors_with_both_lines() {
        let err = parse("a: 1\nb: 2\na: 3\n", &file()).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].location.as_ref().unwrap().line, 3);
        assert_eq!(
            err[0].message,
            "duplicate key `a` (first defined at line 1)"
        );
        let err = parse("stages:\n  g: {}\n  g: {}\n", &file()).unwrap_err();
        assert_eq!(
            err[0].message,
            "duplicate stage id `g` (first defined at line 2)"
        );
    }

    #[test]
    fn syntax_errors_carry_a_location() {
        let err = parse("a: [1, 2\nb: 3\n", &file()).unwrap_err();
        assert!(err[0].message.starts_with("YAML syntax error"));
        assert!(err[0].location.is_some());
    }

    #[test]
    fn aliases_are_expanded() {
        let n = parse("x: &v {a: 1}\ny: *v\n", &file()).unwrap();
        assert_eq!(n.to_json()["y"]["a"], 1);
    }

    /// Nested aliases multiply the document tenfold at every line ("billion
    /// laughs"): without the limit this input builds 10^10 nodes.
    #[test]
    fn alias_bombs_are_an_error_not_an_exponential_copy() {
        let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            yaml.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse(&yaml, &file()).unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(
            err[0]
                .message
                .contains("aliases expand to more than 100000 values"),
            "{}",
            err[0].message
        );
        let loc = err[0].location.as_ref().unwrap();
        // a0..a3 cost 12 330 nodes; the 8th `*a3` of a4 (11 111 each) passes the limit.
        assert_eq!((loc.line, loc.col), (5, 45));
    }

    #[test]
    fn empty_document_is_null() {
        let n = parse("", &file()).unwrap();
        assert_eq!(n.value, NodeValue::Null);
    }
}
