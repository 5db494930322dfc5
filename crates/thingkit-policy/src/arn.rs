//! ARNs: `arn:partition:service:region:account:resource`, split on the first five colons only
//! (MQTT topics may contain `:`), and the prefix a broker uses to build request ARNs.

use crate::context::Context;
use crate::pattern::{Pattern, PatternMatch};

use crate::glob::Joined;

/// Splits an ARN into its six parts; the resource part keeps any further colons.
pub(crate) fn split_arn(arn: &str) -> Option<[&str; 6]> {
    let (head, cuts) = head_cuts(arn)?;
    let resource = arn.get(head.len() + 1..)?;
    let t = Target {
        head,
        cuts,
        resource: Joined {
            head: b"",
            tail: resource.as_bytes(),
        },
    };
    Some([
        t.part(0),
        t.part(1),
        t.part(2),
        t.part(3),
        t.part(4),
        resource,
    ])
}

/// The text before an ARN's fifth colon and the positions of its first four colons.
fn head_cuts(arn: &str) -> Option<(&str, [usize; 4])> {
    let mut cuts = [0usize; 4];
    let mut found = 0;
    for (i, b) in arn.bytes().enumerate() {
        if b == b':' {
            match cuts.get_mut(found) {
                Some(slot) => *slot = i,
                None => return Some((arn.get(..i)?, cuts)),
            }
            found += 1;
        }
    }
    None
}

/// The fixed part of every request ARN: `arn:<partition>:iot:<region>:<account>:`.
///
/// Build it once (per broker or per account) and hand it to the request builders
/// ([`ArnPrefix::publish`], ...): a request refers to it and never copies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArnPrefix {
    /// `arn:<partition>:iot:<region>:<account>:`.
    prefix: String,
    /// Positions of the first four colons of `prefix`.
    cuts: [usize; 4],
}

impl ArnPrefix {
    /// A prefix for `partition` (`aws`, `aws-cn`, ...), `region` and `account`.
    ///
    /// Returns `None` if any part is empty or contains `:` (it would shift the ARN's parts).
    pub fn new(partition: &str, region: &str, account: &str) -> Option<ArnPrefix> {
        let ok = |s: &str| !s.is_empty() && !s.contains(':');
        if !(ok(partition) && ok(region) && ok(account)) {
            return None;
        }
        let prefix = format!("arn:{partition}:iot:{region}:{account}:");
        let (_, cuts) = head_cuts(&prefix)?;
        Some(ArnPrefix { prefix, cuts })
    }

    /// The prefix text, ending in `:`.
    pub fn as_str(&self) -> &str {
        &self.prefix
    }

    /// The full ARN of `resource` (e.g. `topic/a/b`).
    pub fn arn(&self, resource: &str) -> String {
        let mut s = String::with_capacity(self.prefix.len() + resource.len());
        s.push_str(&self.prefix);
        s.push_str(resource);
        s
    }

    /// The request resource `<prefix><kind><name>`, in parts. No allocation, no parsing.
    pub(crate) fn target<'a>(&'a self, kind: &'a str, name: &'a str) -> Target<'a> {
        Target {
            // The prefix ends in `:` (constructed so above).
            head: self
                .prefix
                .strip_suffix(':')
                .expect("an ArnPrefix ends in `:`"),
            cuts: self.cuts,
            resource: Joined {
                head: kind.as_bytes(),
                tail: name.as_bytes(),
            },
        }
    }
}

/// A request resource as patterns see it: the ARN's first five parts, and the resource part as
/// the resource type (`topic/`) joined to the name (the topic), never concatenated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// `arn:partition:service:region:account` (without the trailing colon).
    head: &'a str,
    /// Positions of the four colons in `head`.
    cuts: [usize; 4],
    /// The resource part (after the fifth colon).
    resource: Joined<'a>,
}

impl<'a> Target<'a> {
    /// Splits a full ARN string once; `None` if it has fewer than six parts.
    pub(crate) fn from_arn(arn: &'a str) -> Option<Target<'a>> {
        let (head, cuts) = head_cuts(arn)?;
        Some(Target {
            head,
            cuts,
            resource: Joined {
                head: b"",
                tail: arn.get(head.len() + 1..)?.as_bytes(),
            },
        })
    }

    /// The resource part (after the fifth colon).
    pub(crate) fn resource(&self) -> Joined<'a> {
        self.resource
    }

    /// Part `i` (0 to 4) of the head.
    fn part(&self, i: usize) -> &'a str {
        let start = match i {
            0 => 0,
            _ => self.cuts.get(i - 1).map_or(self.head.len(), |c| c + 1),
        };
        let end = self.cuts.get(i).copied().unwrap_or(self.head.len());
        self.head.get(start..end).unwrap_or_default()
    }
}

/// The first five parts of a resource pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Head {
    /// All five literal (the usual case): compared as one string.
    Literal(String),
    /// Some part has a wildcard or variable.
    Parts(Box<[Pattern; 5]>),
}

/// A compiled resource pattern: `*`, or six per-part glob patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArnPattern {
    /// `*`: every resource.
    Any,
    /// Six parts matched separately.
    Parts {
        /// Parts one to five.
        head: Head,
        /// The resource part.
        resource: Pattern,
    },
}

impl ArnPattern {
    /// Compiles a policy resource; errors name what is wrong.
    pub(crate) fn new(text: &str) -> Result<ArnPattern, String> {
        if text == "*" {
            return Ok(ArnPattern::Any);
        }
        let Some(parts) = split_arn(text) else {
            return Err(format!(
                "resource `{text}` is neither `*` nor an ARN `arn:partition:service:region:account:resource`"
            ));
        };
        if parts[0] != "arn" && parts[0] != "*" {
            return Err(format!("resource `{text}` does not start with `arn:`"));
        }
        let [a, b, c, d, e, f] = parts;
        let head = [
            Pattern::new(a, true)?,
            Pattern::new(b, true)?,
            Pattern::new(c, true)?,
            Pattern::new(d, true)?,
            Pattern::new(e, true)?,
        ];
        let head = if head.iter().all(|p| p.as_literal().is_some()) {
            Head::Literal(format!("{a}:{b}:{c}:{d}:{e}"))
        } else {
            Head::Parts(Box::new(head))
        };
        Ok(ArnPattern::Parts {
            head,
            resource: Pattern::new(f, true)?,
        })
    }

    /// Matches a request resource (`None`: not an ARN), reporting a variable without a value.
    pub(crate) fn matches<'p>(
        &'p self,
        target: Option<&Target<'_>>,
        ctx: &Context,
        strict: bool,
    ) -> PatternMatch<'p> {
        let ArnPattern::Parts { head, resource } = self else {
            return PatternMatch::Matched;
        };
        // Report a missing variable even when another part would not have matched anyway.
        let head_vars = match head {
            Head::Literal(_) => &[][..],
            Head::Parts(p) => p.as_slice(),
        };
        for p in head_vars.iter().chain(std::iter::once(resource)) {
            for v in p.vars() {
                if v.substitute(ctx, strict).is_none() {
                    return PatternMatch::Unresolved(v);
                }
            }
        }
        match target {
            Some(t) if self.is_match(t, ctx, strict) => PatternMatch::Matched,
            _ => PatternMatch::NotMatched,
        }
    }

    /// Matches a request resource; a missing variable fails the match. Allocation-free.
    pub(crate) fn is_match(&self, arn: &Target<'_>, ctx: &Context, strict: bool) -> bool {
        match self {
            ArnPattern::Any => true,
            ArnPattern::Parts { head, resource } => {
                let head_ok = match head {
                    Head::Literal(h) => h == arn.head,
                    Head::Parts(p) => p
                        .iter()
                        .enumerate()
                        .all(|(i, p)| p.is_match(arn.part(i).as_bytes(), ctx, strict, false)),
                };
                head_ok && resource.is_match(arn.resource, ctx, strict, false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_first_five_colons_only() {
        assert_eq!(
            split_arn("arn:aws:iot:us-east-1:123:topic/a:b:c"),
            Some(["arn", "aws", "iot", "us-east-1", "123", "topic/a:b:c"])
        );
        assert_eq!(split_arn("arn:aws:iot"), None);
    }

    #[test]
    fn star_in_region_does_not_cross_colons() {
        let p = ArnPattern::new("arn:aws:iot:*:123:topic/a").unwrap();
        let ctx = Context::default();
        assert_eq!(
            p.matches(
                Target::from_arn("arn:aws:iot:us-east-1:123:topic/a").as_ref(),
                &ctx,
                false
            ),
            PatternMatch::Matched
        );
        assert_eq!(
            p.matches(
                Target::from_arn("arn:aws:iot:us:east:123:topic/a").as_ref(),
                &ctx,
                false
            ),
            PatternMatch::NotMatched
        );
    }

    #[test]
    fn topic_with_colons_matches_resource_part() {
        let p = ArnPattern::new("arn:aws:iot:us-east-1:123:topic/a:*").unwrap();
        let ctx = Context::default();
        assert_eq!(
            p.matches(
                Target::from_arn("arn:aws:iot:us-east-1:123:topic/a:b:c").as_ref(),
                &ctx,
                false
            ),
            PatternMatch::Matched
        );
    }

    #[test]
    fn rejects_malformed_resources() {
        assert!(ArnPattern::new("topic/a").is_err());
        assert!(ArnPattern::new("arn:aws:iot:*").is_err());
        assert!(ArnPattern::new("urn:aws:iot:r:a:topic/x").is_err());
    }

    #[test]
    fn prefix_builds_arns_and_refuses_colons() {
        let p = ArnPrefix::new("aws", "us-east-1", "123456789012").unwrap();
        assert_eq!(
            p.arn("topic/a"),
            "arn:aws:iot:us-east-1:123456789012:topic/a"
        );
        assert!(ArnPrefix::new("aws", "us:east", "1").is_none());
    }
}
