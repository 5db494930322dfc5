//! The statement index of a compiled [`PolicySet`](crate::PolicySet): per action and effect, a
//! radix tree (path-compressed byte trie) over the literal prefix ("lead") of each resource
//! pattern's resource part.
//!
//! Deciding a request walks the trie along the request's resource part and evaluates only the
//! statements with a pattern whose lead is a prefix of it, plus the statements that must always
//! be checked (`*` resources, `NotResource`, patterns starting with a wildcard or variable).
//! A statement reached twice is simply evaluated twice; evaluation has no side effects.

use crate::arn::ArnPattern;
use crate::document::Statement;
use crate::glob::{Joined, Text};

/// A reference to a statement: (policy index, statement index).
pub(crate) type StatementId = (u32, u32);

#[derive(Debug, Clone, Default)]
struct Node {
    /// The bytes this node adds to its parent's path (empty only for the root).
    label: Vec<u8>,
    /// Child nodes; their labels start with distinct bytes.
    children: Vec<u32>,
    /// Statements with a pattern whose lead ends here.
    hits: Vec<StatementId>,
}

/// The statements of one (action, effect) pair.
#[derive(Debug, Clone)]
pub(crate) struct LeadIndex {
    nodes: Vec<Node>,
    always: Vec<StatementId>,
}

impl Default for LeadIndex {
    fn default() -> Self {
        LeadIndex {
            nodes: vec![Node::default()],
            always: Vec::new(),
        }
    }
}

impl LeadIndex {
    /// Indexes a statement under every lead of its resource patterns.
    pub(crate) fn insert(&mut self, id: StatementId, s: &Statement) {
        let leads: Option<Vec<&str>> = if s.not_resource {
            None
        } else {
            s.resource_patterns
                .iter()
                .map(|p| match p {
                    ArnPattern::Any => None,
                    ArnPattern::Parts { resource, .. } => {
                        Some(resource.lead()).filter(|l| !l.is_empty())
                    }
                })
                .collect()
        };
        let Some(leads) = leads else {
            if !self.always.contains(&id) {
                self.always.push(id);
            }
            return;
        };
        for lead in leads {
            let node = self.node_for(lead.as_bytes());
            if let Some(n) = self.nodes.get_mut(node)
                && !n.hits.contains(&id)
            {
                n.hits.push(id);
            }
        }
    }

    fn child_starting_with(&self, node: usize, b: u8) -> Option<usize> {
        self.nodes
            .get(node)?
            .children
            .iter()
            .map(|c| *c as usize)
            .find(|c| {
                self.nodes
                    .get(*c)
                    .is_some_and(|n| n.label.first() == Some(&b))
            })
    }

    /// The node whose path is exactly `path`, creating (and splitting) nodes as needed.
    fn node_for(&mut self, mut path: &[u8]) -> usize {
        let mut node = 0usize;
        loop {
            let Some(&first) = path.first() else {
                return node;
            };
            let Some(child) = self.child_starting_with(node, first) else {
                let new = self.push(Node {
                    label: path.to_vec(),
                    ..Node::default()
                });
                if let Some(n) = self.nodes.get_mut(node) {
                    n.children.push(new as u32);
                }
                return new;
            };
            let label = self
                .nodes
                .get(child)
                .map(|n| n.label.clone())
                .unwrap_or_default();
            let common = label.iter().zip(path).take_while(|(a, b)| a == b).count();
            if common == label.len() {
                node = child;
                path = path.get(common..).unwrap_or_default();
                continue;
            }
            // Split `child`: a new node takes the common prefix and adopts `child`.
            let middle = self.push(Node {
                label: label.get(..common).unwrap_or_default().to_vec(),
                children: vec![child as u32],
                hits: Vec::new(),
            });
            if let Some(c) = self.nodes.get_mut(child) {
                c.label = label.get(common..).unwrap_or_default().to_vec();
            }
            if let Some(n) = self.nodes.get_mut(node)
                && let Some(slot) = n.children.iter_mut().find(|c| **c as usize == child)
            {
                *slot = middle as u32;
            }
            node = middle;
            path = path.get(common..).unwrap_or_default();
        }
    }

    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Whether `applies` holds for any candidate statement for a request whose resource part is
    /// `resource_part` (`None` when the request resource is not an ARN). Allocation-free.
    pub(crate) fn any(
        &self,
        resource_part: Option<Joined<'_>>,
        mut applies: impl FnMut(StatementId) -> bool,
    ) -> bool {
        if self.always.iter().any(|id| applies(*id)) {
            return true;
        }
        let Some(part) = resource_part else {
            return false;
        };
        let mut pos = 0usize;
        let mut node = 0usize;
        while let Some(first) = part.byte(pos) {
            let Some(child) = self.child_starting_with(node, first) else {
                return false;
            };
            let Some(n) = self.nodes.get(child) else {
                return false;
            };
            if !part.has_at(pos, &n.label, false) {
                return false;
            }
            pos += n.label.len();
            if n.hits.iter().any(|id| applies(*id)) {
                return true;
            }
            node = child;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::PolicyDocument;

    fn index_of(resources: &[&str]) -> (LeadIndex, usize) {
        let list: Vec<String> = resources.iter().map(|r| format!("\"{r}\"")).collect();
        let text = format!(
            r#"{{"Version": "2012-10-17", "Statement": [{}]}}"#,
            list.iter()
                .map(|r| format!(
                    r#"{{"Effect": "Allow", "Action": "iot:Publish", "Resource": {r}}}"#
                ))
                .collect::<Vec<_>>()
                .join(",")
        );
        let doc = PolicyDocument::parse(&text).expect("valid");
        let mut ix = LeadIndex::default();
        for (i, s) in doc.statements().iter().enumerate() {
            ix.insert((0, i as u32), s);
        }
        (ix, doc.statements().len())
    }

    fn candidates(ix: &LeadIndex, part: &str) -> Vec<u32> {
        let mut seen = Vec::new();
        let (head, tail) = part.split_at(part.find('/').map_or(0, |i| i + 1));
        let joined = Joined {
            head: head.as_bytes(),
            tail: tail.as_bytes(),
        };
        ix.any(Some(joined), |(_, s)| {
            seen.push(s);
            false
        });
        seen.sort_unstable();
        seen
    }

    #[test]
    fn finds_exactly_the_statements_whose_lead_prefixes_the_resource() {
        let (ix, n) = index_of(&[
            "arn:aws:iot:r:1:topic/fleet1/*",
            "arn:aws:iot:r:1:topic/fleet10/*",
            "arn:aws:iot:r:1:topic/fleet1/shared/*",
            "arn:aws:iot:r:1:topic/f*",
            "arn:aws:iot:r:1:topic/${iot:ClientId}",
            "*",
            "arn:aws:iot:r:1:topic/other",
        ]);
        assert_eq!(n, 7);
        assert_eq!(
            candidates(&ix, "topic/fleet1/shared/x"),
            vec![0, 2, 3, 4, 5]
        );
        assert_eq!(candidates(&ix, "topic/fleet10/x"), vec![1, 3, 4, 5]);
        assert_eq!(candidates(&ix, "topic/fleet2"), vec![3, 4, 5]);
        assert_eq!(candidates(&ix, "topic/other"), vec![4, 5, 6]);
        assert_eq!(candidates(&ix, "client/x"), vec![5]);
    }
}
