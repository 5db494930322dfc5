//! The statement index of a compiled [`PolicySet`](crate::PolicySet): per action and effect, a
//! byte trie over the literal prefix ("lead") of each resource pattern's resource part.
//!
//! Deciding a request walks the trie along the request's resource part and evaluates only the
//! statements with a pattern whose lead is a prefix of it, plus the statements that must always
//! be checked (`*` resources, `NotResource`, patterns starting with a wildcard or variable).
//! A statement reached twice is simply evaluated twice; evaluation has no side effects.

use crate::arn::ArnPattern;
use crate::document::Statement;

/// A reference to a statement: (policy index, statement index).
pub(crate) type StatementId = (u32, u32);

#[derive(Debug, Clone, Default)]
struct Node {
    /// Outgoing edges, by byte.
    edges: Vec<(u8, u32)>,
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
            self.always.push(id);
            return;
        };
        for lead in leads {
            let mut node = 0usize;
            for b in lead.bytes() {
                let existing = self
                    .nodes
                    .get(node)
                    .and_then(|n| n.edges.iter().find(|(e, _)| *e == b))
                    .map(|(_, next)| *next as usize);
                node = match existing {
                    Some(next) => next,
                    None => {
                        let next = self.nodes.len();
                        self.nodes.push(Node::default());
                        if let Some(n) = self.nodes.get_mut(node) {
                            n.edges.push((b, next as u32));
                        }
                        next
                    }
                };
            }
            if let Some(n) = self.nodes.get_mut(node)
                && !n.hits.contains(&id)
            {
                n.hits.push(id);
            }
        }
    }

    /// Whether `applies` holds for any candidate statement for a request whose resource part is
    /// `resource_part` (`None` when the request resource is not an ARN). Allocation-free.
    pub(crate) fn any(
        &self,
        resource_part: Option<&str>,
        mut applies: impl FnMut(StatementId) -> bool,
    ) -> bool {
        if self.always.iter().any(|id| applies(*id)) {
            return true;
        }
        let Some(part) = resource_part else {
            return false;
        };
        let mut node = match self.nodes.first() {
            Some(n) => n,
            None => return false,
        };
        for b in part.bytes() {
            let Some(next) = node
                .edges
                .iter()
                .find(|(e, _)| *e == b)
                .and_then(|(_, i)| self.nodes.get(*i as usize))
            else {
                return false;
            };
            node = next;
            if node.hits.iter().any(|id| applies(*id)) {
                return true;
            }
        }
        false
    }
}
