//! The AWS IoT data-plane actions and the resource type each one is checked against.

use std::fmt;

/// The kind of resource an action is authorized against (the part of the ARN after the account).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResourceType {
    /// `client/<client-id>`.
    Client,
    /// `topic/<topic-name>`.
    Topic,
    /// `topicfilter/<topic-filter>`.
    TopicFilter,
    /// `thing/<thing-name>`.
    Thing,
    /// `rolealias/<role-alias>`.
    RoleAlias,
    /// No specific resource: the policy resource must be `*`.
    Any,
}

impl ResourceType {
    /// The ARN resource prefix including the trailing `/` (`""` for [`ResourceType::Any`]).
    pub fn prefix(self) -> &'static str {
        match self {
            ResourceType::Client => "client/",
            ResourceType::Topic => "topic/",
            ResourceType::TopicFilter => "topicfilter/",
            ResourceType::Thing => "thing/",
            ResourceType::RoleAlias => "rolealias/",
            ResourceType::Any => "",
        }
    }
}

macro_rules! actions {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal => $rt:ident ),* $(,)?) => {
        /// An AWS IoT data-plane action (the `Action` of a request).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Action {
            $( $(#[$doc])* $variant, )*
        }

        impl Action {
            /// Every action, in a fixed order (its index is its bit in an [`ActionSet`]).
            pub const ALL: &'static [Action] = &[ $( Action::$variant, )* ];

            /// The number of actions.
            pub const COUNT: usize = Self::ALL.len();

            /// The action's name, e.g. `iot:Publish`.
            pub fn name(self) -> &'static str {
                match self { $( Action::$variant => $name, )* }
            }

            /// The resource type this action is checked against.
            pub fn resource_type(self) -> ResourceType {
                match self { $( Action::$variant => ResourceType::$rt, )* }
            }
        }
    };
}

actions! {
    /// `iot:Connect` — connect with a client ID (`client/`).
    Connect = "iot:Connect" => Client,
    /// `iot:Publish` — publish to a topic (`topic/`).
    Publish = "iot:Publish" => Topic,
    /// `iot:Subscribe` — subscribe to a topic filter (`topicfilter/`).
    Subscribe = "iot:Subscribe" => TopicFilter,
    /// `iot:Receive` — receive a message on a topic (`topic/`), checked per delivered message.
    Receive = "iot:Receive" => Topic,
    /// `iot:RetainPublish` — publish a retained message (`topic/`), checked with `iot:Publish`.
    RetainPublish = "iot:RetainPublish" => Topic,
    /// `iot:GetRetainedMessage` — read one retained message (`topic/`).
    GetRetainedMessage = "iot:GetRetainedMessage" => Topic,
    /// `iot:ListRetainedMessages` — list retained messages (resource `*`).
    ListRetainedMessages = "iot:ListRetainedMessages" => Any,
    /// `iot:DeleteThingShadow` (`thing/`).
    DeleteThingShadow = "iot:DeleteThingShadow" => Thing,
    /// `iot:GetThingShadow` (`thing/`).
    GetThingShadow = "iot:GetThingShadow" => Thing,
    /// `iot:UpdateThingShadow` (`thing/`).
    UpdateThingShadow = "iot:UpdateThingShadow" => Thing,
    /// `iot:ListNamedShadowsForThing` (`thing/`).
    ListNamedShadowsForThing = "iot:ListNamedShadowsForThing" => Thing,
    /// `iot:DescribeJobExecution` (`thing/`).
    DescribeJobExecution = "iot:DescribeJobExecution" => Thing,
    /// `iot:GetPendingJobExecutions` (`thing/`).
    GetPendingJobExecutions = "iot:GetPendingJobExecutions" => Thing,
    /// `iot:StartNextPendingJobExecution` (`thing/`).
    StartNextPendingJobExecution = "iot:StartNextPendingJobExecution" => Thing,
    /// `iot:UpdateJobExecution` (`thing/`).
    UpdateJobExecution = "iot:UpdateJobExecution" => Thing,
    /// `iot:AssumeRoleWithCertificate` — credentials provider (`rolealias/`).
    AssumeRoleWithCertificate = "iot:AssumeRoleWithCertificate" => RoleAlias,
}

impl Action {
    /// Parses an action name case-insensitively (`iot:publish` is `iot:Publish`); no wildcards.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL
            .iter()
            .copied()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of actions, stored as a bit set (one bit per [`Action`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ActionSet(u32);

impl ActionSet {
    /// The empty set.
    pub const EMPTY: ActionSet = ActionSet(0);

    /// Every action.
    pub fn all() -> ActionSet {
        let mut s = ActionSet::EMPTY;
        for a in Action::ALL {
            s.insert(*a);
        }
        s
    }

    /// Adds an action.
    pub fn insert(&mut self, action: Action) {
        self.0 |= action.bit();
    }

    /// Whether the set holds `action`.
    pub fn contains(self, action: Action) -> bool {
        self.0 & action.bit() != 0
    }

    /// Set union.
    pub fn union(self, other: ActionSet) -> ActionSet {
        ActionSet(self.0 | other.0)
    }

    /// The actions not in this set.
    pub fn complement(self) -> ActionSet {
        ActionSet(ActionSet::all().0 & !self.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The actions in the set, in [`Action::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Action> {
        Action::ALL
            .iter()
            .copied()
            .filter(move |a| self.contains(*a))
    }

    /// The actions whose name matches an IAM action pattern (`iot:*`, `iot:Get*`, `*`),
    /// case-insensitively. Patterns for other services match no IoT action.
    pub fn matching(pattern: &str) -> ActionSet {
        let pieces: Vec<crate::glob::Piece<()>> = crate::glob::pieces_of(pattern);
        let mut s = ActionSet::EMPTY;
        for a in Action::ALL {
            if crate::glob::matches(&pieces, a.name().as_bytes(), true, &|_: &()| None) {
                s.insert(*a);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `PolicySet` indexes per-action tables with `action as usize`: actions must be numbered
    /// 0..COUNT in `ALL` order.
    #[test]
    fn actions_are_numbered_densely_in_all_order() {
        assert_eq!(Action::COUNT, Action::ALL.len());
        for (i, a) in Action::ALL.iter().enumerate() {
            assert_eq!(*a as usize, i, "{a:?}");
        }
    }

    #[test]
    fn action_names_match_case_insensitively() {
        assert_eq!(Action::from_name("IOT:PUBLISH"), Some(Action::Publish));
        assert_eq!(Action::from_name("iot:Publis"), None);
    }

    #[test]
    fn action_patterns_expand_to_sets() {
        assert_eq!(ActionSet::matching("iot:*"), ActionSet::all());
        assert_eq!(ActionSet::matching("*"), ActionSet::all());
        let get = ActionSet::matching("iot:get*");
        assert!(get.contains(Action::GetThingShadow));
        assert!(get.contains(Action::GetRetainedMessage));
        assert!(get.contains(Action::GetPendingJobExecutions));
        assert!(!get.contains(Action::Publish));
        assert!(ActionSet::matching("s3:*").is_empty());
        assert_eq!(
            ActionSet::matching("iot:?onnect")
                .iter()
                .collect::<Vec<_>>(),
            vec![Action::Connect]
        );
    }

    #[test]
    fn complement_excludes_members() {
        let mut s = ActionSet::EMPTY;
        s.insert(Action::Publish);
        let c = s.complement();
        assert!(!c.contains(Action::Publish));
        assert!(c.contains(Action::Connect));
    }
}
