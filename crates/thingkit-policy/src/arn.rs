//! ARNs: `arn:partition:service:region:account:resource`, split on the first five colons only
//! (MQTT topics may contain `:`), and the prefix a broker uses to build request ARNs.

use crate::context::Context;
use crate::pattern::{Pattern, PatternMatch};

/// Splits an ARN into its six parts; the resource part keeps any further colons.
pub fn split_arn(arn: &str) -> Option<[&str; 6]> {
    let bytes = arn.as_bytes();
    let mut cuts = [0usize; 5];
    let mut found = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b':' {
            if let Some(slot) = cuts.get_mut(found) {
                *slot = i;
            }
            found += 1;
            if found == 5 {
                break;
            }
        }
    }
    if found < 5 {
        return None;
    }
    let [c0, c1, c2, c3, c4] = cuts;
    Some([
        arn.get(..c0)?,
        arn.get(c0 + 1..c1)?,
        arn.get(c1 + 1..c2)?,
        arn.get(c2 + 1..c3)?,
        arn.get(c3 + 1..c4)?,
        arn.get(c4 + 1..)?,
    ])
}

/// The fixed part of every request ARN: `arn:<partition>:iot:<region>:<account>:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArnPrefix {
    prefix: String,
}

impl ArnPrefix {
    /// A prefix for `partition` (`aws`, `aws-cn`, ...), `region` and `account`.
    ///
    /// Returns `None` if any part is empty or contains `:` (it would shift the ARN's parts).
    pub fn new(partition: &str, region: &str, account: &str) -> Option<ArnPrefix> {
        let ok = |s: &str| !s.is_empty() && !s.contains(':');
        (ok(partition) && ok(region) && ok(account)).then(|| ArnPrefix {
            prefix: format!("arn:{partition}:iot:{region}:{account}:"),
        })
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
}

/// A request ARN split once: the first five parts as one string, and all six parts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SplitArn<'a> {
    /// `arn:partition:service:region:account` (without the trailing colon).
    head: &'a str,
    parts: [&'a str; 6],
}

impl<'a> SplitArn<'a> {
    /// The resource part (after the fifth colon).
    pub(crate) fn resource(&self) -> &'a str {
        self.parts[5]
    }

    pub(crate) fn new(arn: &'a str) -> Option<SplitArn<'a>> {
        let parts = split_arn(arn)?;
        let head_len = arn.len() - parts[5].len() - 1;
        Some(SplitArn {
            head: arn.get(..head_len)?,
            parts,
        })
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

    /// Matches a request ARN, reporting a variable without a value.
    pub(crate) fn matches<'p>(
        &'p self,
        arn: &str,
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
        match SplitArn::new(arn) {
            Some(split) if self.is_match(&split, ctx, strict) => PatternMatch::Matched,
            _ => PatternMatch::NotMatched,
        }
    }

    /// Matches a split request ARN; a missing variable fails the match. Allocation-free.
    pub(crate) fn is_match(&self, arn: &SplitArn<'_>, ctx: &Context, strict: bool) -> bool {
        match self {
            ArnPattern::Any => true,
            ArnPattern::Parts { head, resource } => {
                let head_ok = match head {
                    Head::Literal(h) => h == arn.head,
                    Head::Parts(p) => p
                        .iter()
                        .zip(arn.parts)
                        .all(|(p, part)| p.is_match(part, ctx, strict, false)),
                };
                head_ok && resource.is_match(arn.parts[5], ctx, strict, false)
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
            p.matches("arn:aws:iot:us-east-1:123:topic/a", &ctx, false),
            PatternMatch::Matched
        );
        assert_eq!(
            p.matches("arn:aws:iot:us:east:123:topic/a", &ctx, false),
            PatternMatch::NotMatched
        );
    }

    #[test]
    fn topic_with_colons_matches_resource_part() {
        let p = ArnPattern::new("arn:aws:iot:us-east-1:123:topic/a:*").unwrap();
        let ctx = Context::default();
        assert_eq!(
            p.matches("arn:aws:iot:us-east-1:123:topic/a:b:c", &ctx, false),
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
