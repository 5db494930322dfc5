//! The AWS IoT actions and the resource type each one is checked against: the data-plane
//! actions device policies name, and the control-plane operations (`iot:CreateThing`, ...) that
//! IAM identity policies name.

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
    /// `thingtype/<thing-type-name>`.
    ThingType,
    /// `thinggroup/<thing-group-name>`.
    ThingGroup,
    /// `cert/<certificate-id>`.
    Cert,
    /// `cacert/<ca-certificate-id>`.
    CaCert,
    /// `policy/<policy-name>`.
    Policy,
    /// `provisioningtemplate/<template-name>`.
    ProvisioningTemplate,
    /// `job/<job-id>`.
    Job,
    /// `jobtemplate/<job-template-id>`.
    JobTemplate,
    /// `rule/<rule-name>`: a topic rule.
    Rule,
    /// `securityprofile/<security-profile-name>`: a Device Defender security profile.
    SecurityProfile,
    /// `scheduledaudit/<scheduled-audit-name>`: a Device Defender scheduled audit.
    ScheduledAudit,
    /// No specific resource: the policy resource must be `*`.
    Any,
}

impl ResourceType {
    /// The resource type whose ARN resource part starts with `head` + `/` (`topic` → Topic).
    pub fn from_prefix(head: &str) -> Option<ResourceType> {
        Some(match head {
            "client" => ResourceType::Client,
            "topic" => ResourceType::Topic,
            "topicfilter" => ResourceType::TopicFilter,
            "thing" => ResourceType::Thing,
            "rolealias" => ResourceType::RoleAlias,
            "thingtype" => ResourceType::ThingType,
            "thinggroup" => ResourceType::ThingGroup,
            "cert" => ResourceType::Cert,
            "cacert" => ResourceType::CaCert,
            "policy" => ResourceType::Policy,
            "provisioningtemplate" => ResourceType::ProvisioningTemplate,
            "job" => ResourceType::Job,
            "jobtemplate" => ResourceType::JobTemplate,
            "rule" => ResourceType::Rule,
            "securityprofile" => ResourceType::SecurityProfile,
            "scheduledaudit" => ResourceType::ScheduledAudit,
            _ => return None,
        })
    }

    /// The ARN resource prefix including the trailing `/` (`""` for [`ResourceType::Any`]).
    pub fn prefix(self) -> &'static str {
        match self {
            ResourceType::Client => "client/",
            ResourceType::Topic => "topic/",
            ResourceType::TopicFilter => "topicfilter/",
            ResourceType::Thing => "thing/",
            ResourceType::RoleAlias => "rolealias/",
            ResourceType::ThingType => "thingtype/",
            ResourceType::ThingGroup => "thinggroup/",
            ResourceType::Cert => "cert/",
            ResourceType::CaCert => "cacert/",
            ResourceType::Policy => "policy/",
            ResourceType::ProvisioningTemplate => "provisioningtemplate/",
            ResourceType::Job => "job/",
            ResourceType::JobTemplate => "jobtemplate/",
            ResourceType::Rule => "rule/",
            ResourceType::SecurityProfile => "securityprofile/",
            ResourceType::ScheduledAudit => "scheduledaudit/",
            ResourceType::Any => "",
        }
    }
}

macro_rules! actions {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal => $rt:ident ),* $(,)?) => {
        /// An AWS IoT action (the `Action` of a request): a data-plane action a device policy
        /// grants, or a control-plane operation an IAM identity policy grants.
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
    // The control-plane operations thingkit's API serves (IAM identity policies name them).
    /// `iot:AddThingToThingGroup` — control plane (`thinggroup/`).
    AddThingToThingGroup = "iot:AddThingToThingGroup" => ThingGroup,
    /// `iot:AssociateTargetsWithJob` — control plane (`job/`).
    AssociateTargetsWithJob = "iot:AssociateTargetsWithJob" => Job,
    /// `iot:AttachPolicy` — control plane (`policy/`).
    AttachPolicy = "iot:AttachPolicy" => Policy,
    /// `iot:AttachPrincipalPolicy` — control plane (`policy/`).
    AttachPrincipalPolicy = "iot:AttachPrincipalPolicy" => Policy,
    /// `iot:AttachSecurityProfile` — the Device Defender operation (`securityprofile/`).
    AttachSecurityProfile = "iot:AttachSecurityProfile" => SecurityProfile,
    /// `iot:AttachThingPrincipal` — control plane (`thing/`).
    AttachThingPrincipal = "iot:AttachThingPrincipal" => Thing,
    /// `iot:CancelAuditTask` — the Device Defender operation (resource `*`).
    CancelAuditTask = "iot:CancelAuditTask" => Any,
    /// `iot:CancelJob` — control plane (`job/`).
    CancelJob = "iot:CancelJob" => Job,
    /// `iot:CancelJobExecution` — control plane (`thing/`).
    CancelJobExecution = "iot:CancelJobExecution" => Thing,
    /// `iot:CreateAuditSuppression` — the Device Defender operation (resource `*`).
    CreateAuditSuppression = "iot:CreateAuditSuppression" => Any,
    /// `iot:CreateCertificateFromCsr` — control plane (resource `*`).
    CreateCertificateFromCsr = "iot:CreateCertificateFromCsr" => Any,
    /// `iot:CreateJob` — control plane (`job/`).
    CreateJob = "iot:CreateJob" => Job,
    /// `iot:CreateJobTemplate` — control plane (`jobtemplate/`).
    CreateJobTemplate = "iot:CreateJobTemplate" => JobTemplate,
    /// `iot:CreateKeysAndCertificate` — control plane (resource `*`).
    CreateKeysAndCertificate = "iot:CreateKeysAndCertificate" => Any,
    /// `iot:CreatePolicy` — control plane (`policy/`).
    CreatePolicy = "iot:CreatePolicy" => Policy,
    /// `iot:CreatePolicyVersion` — control plane (`policy/`).
    CreatePolicyVersion = "iot:CreatePolicyVersion" => Policy,
    /// `iot:CreateProvisioningTemplate` — control plane (`provisioningtemplate/`).
    CreateProvisioningTemplate = "iot:CreateProvisioningTemplate" => ProvisioningTemplate,
    /// `iot:CreateScheduledAudit` — the Device Defender operation (`scheduledaudit/`).
    CreateScheduledAudit = "iot:CreateScheduledAudit" => ScheduledAudit,
    /// `iot:CreateSecurityProfile` — the Device Defender operation (`securityprofile/`).
    CreateSecurityProfile = "iot:CreateSecurityProfile" => SecurityProfile,
    /// `iot:CreateThing` — control plane (`thing/`).
    CreateThing = "iot:CreateThing" => Thing,
    /// `iot:CreateThingGroup` — control plane (`thinggroup/`).
    CreateThingGroup = "iot:CreateThingGroup" => ThingGroup,
    /// `iot:CreateThingType` — control plane (`thingtype/`).
    CreateThingType = "iot:CreateThingType" => ThingType,
    /// `iot:CreateTopicRule` — control plane (`rule/`).
    CreateTopicRule = "iot:CreateTopicRule" => Rule,
    /// `iot:DeleteAuditSuppression` — the Device Defender operation (resource `*`).
    DeleteAuditSuppression = "iot:DeleteAuditSuppression" => Any,
    /// `iot:DeleteCACertificate` — control plane (`cacert/`).
    DeleteCACertificate = "iot:DeleteCACertificate" => CaCert,
    /// `iot:DeleteCertificate` — control plane (`cert/`).
    DeleteCertificate = "iot:DeleteCertificate" => Cert,
    /// `iot:DeleteJob` — control plane (`job/`).
    DeleteJob = "iot:DeleteJob" => Job,
    /// `iot:DeleteJobExecution` — control plane (`thing/`).
    DeleteJobExecution = "iot:DeleteJobExecution" => Thing,
    /// `iot:DeleteJobTemplate` — control plane (`jobtemplate/`).
    DeleteJobTemplate = "iot:DeleteJobTemplate" => JobTemplate,
    /// `iot:DeletePolicy` — control plane (`policy/`).
    DeletePolicy = "iot:DeletePolicy" => Policy,
    /// `iot:DeletePolicyVersion` — control plane (`policy/`).
    DeletePolicyVersion = "iot:DeletePolicyVersion" => Policy,
    /// `iot:DeleteProvisioningTemplate` — control plane (`provisioningtemplate/`).
    DeleteProvisioningTemplate = "iot:DeleteProvisioningTemplate" => ProvisioningTemplate,
    /// `iot:DeleteScheduledAudit` — the Device Defender operation (`scheduledaudit/`).
    DeleteScheduledAudit = "iot:DeleteScheduledAudit" => ScheduledAudit,
    /// `iot:DeleteSecurityProfile` — the Device Defender operation (`securityprofile/`).
    DeleteSecurityProfile = "iot:DeleteSecurityProfile" => SecurityProfile,
    /// `iot:DeleteThing` — control plane (`thing/`).
    DeleteThing = "iot:DeleteThing" => Thing,
    /// `iot:DeleteThingGroup` — control plane (`thinggroup/`).
    DeleteThingGroup = "iot:DeleteThingGroup" => ThingGroup,
    /// `iot:DeleteThingType` — control plane (`thingtype/`).
    DeleteThingType = "iot:DeleteThingType" => ThingType,
    /// `iot:DeleteTopicRule` — control plane (`rule/`).
    DeleteTopicRule = "iot:DeleteTopicRule" => Rule,
    /// `iot:DeprecateThingType` — control plane (`thingtype/`).
    DeprecateThingType = "iot:DeprecateThingType" => ThingType,
    /// `iot:DescribeAccountAuditConfiguration` — the Device Defender operation (resource `*`).
    DescribeAccountAuditConfiguration = "iot:DescribeAccountAuditConfiguration" => Any,
    /// `iot:DescribeAuditFinding` — the Device Defender operation (resource `*`).
    DescribeAuditFinding = "iot:DescribeAuditFinding" => Any,
    /// `iot:DescribeAuditSuppression` — the Device Defender operation (resource `*`).
    DescribeAuditSuppression = "iot:DescribeAuditSuppression" => Any,
    /// `iot:DescribeAuditTask` — the Device Defender operation (resource `*`).
    DescribeAuditTask = "iot:DescribeAuditTask" => Any,
    /// `iot:DescribeCACertificate` — control plane (`cacert/`).
    DescribeCACertificate = "iot:DescribeCACertificate" => CaCert,
    /// `iot:DescribeCertificate` — control plane (`cert/`).
    DescribeCertificate = "iot:DescribeCertificate" => Cert,
    /// `iot:DescribeEndpoint` — control plane (resource `*`).
    DescribeEndpoint = "iot:DescribeEndpoint" => Any,
    /// `iot:DescribeJob` — control plane (`job/`).
    DescribeJob = "iot:DescribeJob" => Job,
    /// `iot:DescribeJobTemplate` — control plane (`jobtemplate/`).
    DescribeJobTemplate = "iot:DescribeJobTemplate" => JobTemplate,
    /// `iot:DescribeProvisioningTemplate` — control plane (`provisioningtemplate/`).
    DescribeProvisioningTemplate = "iot:DescribeProvisioningTemplate" => ProvisioningTemplate,
    /// `iot:DescribeScheduledAudit` — the Device Defender operation (`scheduledaudit/`).
    DescribeScheduledAudit = "iot:DescribeScheduledAudit" => ScheduledAudit,
    /// `iot:DescribeSecurityProfile` — the Device Defender operation (`securityprofile/`).
    DescribeSecurityProfile = "iot:DescribeSecurityProfile" => SecurityProfile,
    /// `iot:DescribeThing` — control plane (`thing/`).
    DescribeThing = "iot:DescribeThing" => Thing,
    /// `iot:DescribeThingGroup` — control plane (`thinggroup/`).
    DescribeThingGroup = "iot:DescribeThingGroup" => ThingGroup,
    /// `iot:DescribeThingType` — control plane (`thingtype/`).
    DescribeThingType = "iot:DescribeThingType" => ThingType,
    /// `iot:DetachPolicy` — control plane (`policy/`).
    DetachPolicy = "iot:DetachPolicy" => Policy,
    /// `iot:DetachPrincipalPolicy` — control plane (`policy/`).
    DetachPrincipalPolicy = "iot:DetachPrincipalPolicy" => Policy,
    /// `iot:DetachSecurityProfile` — the Device Defender operation (`securityprofile/`).
    DetachSecurityProfile = "iot:DetachSecurityProfile" => SecurityProfile,
    /// `iot:DetachThingPrincipal` — control plane (`thing/`).
    DetachThingPrincipal = "iot:DetachThingPrincipal" => Thing,
    /// `iot:DisableTopicRule` — control plane (`rule/`).
    DisableTopicRule = "iot:DisableTopicRule" => Rule,
    /// `iot:EnableTopicRule` — control plane (`rule/`).
    EnableTopicRule = "iot:EnableTopicRule" => Rule,
    /// `iot:GetEffectivePolicies` — control plane (resource `*`).
    GetEffectivePolicies = "iot:GetEffectivePolicies" => Any,
    /// `iot:GetJobDocument` — control plane (`job/`).
    GetJobDocument = "iot:GetJobDocument" => Job,
    /// `iot:GetPolicy` — control plane (`policy/`).
    GetPolicy = "iot:GetPolicy" => Policy,
    /// `iot:GetPolicyVersion` — control plane (`policy/`).
    GetPolicyVersion = "iot:GetPolicyVersion" => Policy,
    /// `iot:GetRegistrationCode` — control plane (resource `*`).
    GetRegistrationCode = "iot:GetRegistrationCode" => Any,
    /// `iot:GetTopicRule` — control plane (`rule/`).
    GetTopicRule = "iot:GetTopicRule" => Rule,
    /// `iot:ListActiveViolations` — the Device Defender operation (resource `*`).
    ListActiveViolations = "iot:ListActiveViolations" => Any,
    /// `iot:ListAttachedPolicies` — control plane (resource `*`).
    ListAttachedPolicies = "iot:ListAttachedPolicies" => Any,
    /// `iot:ListAuditFindings` — the Device Defender operation (resource `*`).
    ListAuditFindings = "iot:ListAuditFindings" => Any,
    /// `iot:ListAuditSuppressions` — the Device Defender operation (resource `*`).
    ListAuditSuppressions = "iot:ListAuditSuppressions" => Any,
    /// `iot:ListAuditTasks` — the Device Defender operation (resource `*`).
    ListAuditTasks = "iot:ListAuditTasks" => Any,
    /// `iot:ListCACertificates` — control plane (resource `*`).
    ListCACertificates = "iot:ListCACertificates" => Any,
    /// `iot:ListCertificates` — control plane (resource `*`).
    ListCertificates = "iot:ListCertificates" => Any,
    /// `iot:ListCertificatesByCA` — control plane (`cacert/`).
    ListCertificatesByCA = "iot:ListCertificatesByCA" => CaCert,
    /// `iot:ListJobExecutionsForJob` — control plane (`job/`).
    ListJobExecutionsForJob = "iot:ListJobExecutionsForJob" => Job,
    /// `iot:ListJobExecutionsForThing` — control plane (`thing/`).
    ListJobExecutionsForThing = "iot:ListJobExecutionsForThing" => Thing,
    /// `iot:ListJobTemplates` — control plane (resource `*`).
    ListJobTemplates = "iot:ListJobTemplates" => Any,
    /// `iot:ListJobs` — control plane (resource `*`).
    ListJobs = "iot:ListJobs" => Any,
    /// `iot:ListPolicies` — control plane (resource `*`).
    ListPolicies = "iot:ListPolicies" => Any,
    /// `iot:ListPolicyVersions` — control plane (`policy/`).
    ListPolicyVersions = "iot:ListPolicyVersions" => Policy,
    /// `iot:ListPrincipalPolicies` — control plane (resource `*`).
    ListPrincipalPolicies = "iot:ListPrincipalPolicies" => Any,
    /// `iot:ListPrincipalThings` — control plane (resource `*`).
    ListPrincipalThings = "iot:ListPrincipalThings" => Any,
    /// `iot:ListProvisioningTemplates` — control plane (resource `*`).
    ListProvisioningTemplates = "iot:ListProvisioningTemplates" => Any,
    /// `iot:ListScheduledAudits` — the Device Defender operation (resource `*`).
    ListScheduledAudits = "iot:ListScheduledAudits" => Any,
    /// `iot:ListSecurityProfiles` — the Device Defender operation (resource `*`).
    ListSecurityProfiles = "iot:ListSecurityProfiles" => Any,
    /// `iot:ListSecurityProfilesForTarget` — the Device Defender operation (resource `*`).
    ListSecurityProfilesForTarget = "iot:ListSecurityProfilesForTarget" => Any,
    /// `iot:ListTargetsForPolicy` — control plane (`policy/`).
    ListTargetsForPolicy = "iot:ListTargetsForPolicy" => Policy,
    /// `iot:ListTargetsForSecurityProfile` — the Device Defender operation (`securityprofile/`).
    ListTargetsForSecurityProfile = "iot:ListTargetsForSecurityProfile" => SecurityProfile,
    /// `iot:ListThingGroups` — control plane (resource `*`).
    ListThingGroups = "iot:ListThingGroups" => Any,
    /// `iot:ListThingGroupsForThing` — control plane (`thing/`).
    ListThingGroupsForThing = "iot:ListThingGroupsForThing" => Thing,
    /// `iot:ListThingPrincipals` — control plane (`thing/`).
    ListThingPrincipals = "iot:ListThingPrincipals" => Thing,
    /// `iot:ListThingTypes` — control plane (resource `*`).
    ListThingTypes = "iot:ListThingTypes" => Any,
    /// `iot:ListThings` — control plane (resource `*`).
    ListThings = "iot:ListThings" => Any,
    /// `iot:ListThingsInThingGroup` — control plane (`thinggroup/`).
    ListThingsInThingGroup = "iot:ListThingsInThingGroup" => ThingGroup,
    /// `iot:ListTopicRules` — control plane (resource `*`).
    ListTopicRules = "iot:ListTopicRules" => Any,
    /// `iot:ListViolationEvents` — the Device Defender operation (resource `*`).
    ListViolationEvents = "iot:ListViolationEvents" => Any,
    /// `iot:RegisterCACertificate` — control plane (resource `*`).
    RegisterCACertificate = "iot:RegisterCACertificate" => Any,
    /// `iot:RegisterCertificate` — control plane (resource `*`).
    RegisterCertificate = "iot:RegisterCertificate" => Any,
    /// `iot:RegisterCertificateWithoutCA` — control plane (resource `*`).
    RegisterCertificateWithoutCA = "iot:RegisterCertificateWithoutCA" => Any,
    /// `iot:RemoveThingFromThingGroup` — control plane (`thinggroup/`).
    RemoveThingFromThingGroup = "iot:RemoveThingFromThingGroup" => ThingGroup,
    /// `iot:ReplaceTopicRule` — control plane (`rule/`).
    ReplaceTopicRule = "iot:ReplaceTopicRule" => Rule,
    /// `iot:SetDefaultPolicyVersion` — control plane (`policy/`).
    SetDefaultPolicyVersion = "iot:SetDefaultPolicyVersion" => Policy,
    /// `iot:StartOnDemandAuditTask` — the Device Defender operation (resource `*`).
    StartOnDemandAuditTask = "iot:StartOnDemandAuditTask" => Any,
    /// `iot:TestAuthorization` — control plane (resource `*`).
    TestAuthorization = "iot:TestAuthorization" => Any,
    /// `iot:UpdateAccountAuditConfiguration` — the Device Defender operation (resource `*`).
    UpdateAccountAuditConfiguration = "iot:UpdateAccountAuditConfiguration" => Any,
    /// `iot:UpdateAuditSuppression` — the Device Defender operation (resource `*`).
    UpdateAuditSuppression = "iot:UpdateAuditSuppression" => Any,
    /// `iot:UpdateCACertificate` — control plane (`cacert/`).
    UpdateCACertificate = "iot:UpdateCACertificate" => CaCert,
    /// `iot:UpdateCertificate` — control plane (`cert/`).
    UpdateCertificate = "iot:UpdateCertificate" => Cert,
    /// `iot:UpdateJob` — control plane (`job/`).
    UpdateJob = "iot:UpdateJob" => Job,
    /// `iot:UpdateProvisioningTemplate` — control plane (`provisioningtemplate/`).
    UpdateProvisioningTemplate = "iot:UpdateProvisioningTemplate" => ProvisioningTemplate,
    /// `iot:UpdateScheduledAudit` — the Device Defender operation (`scheduledaudit/`).
    UpdateScheduledAudit = "iot:UpdateScheduledAudit" => ScheduledAudit,
    /// `iot:UpdateSecurityProfile` — the Device Defender operation (`securityprofile/`).
    UpdateSecurityProfile = "iot:UpdateSecurityProfile" => SecurityProfile,
    /// `iot:UpdateThing` — control plane (`thing/`).
    UpdateThing = "iot:UpdateThing" => Thing,
    /// `iot:UpdateThingGroup` — control plane (`thinggroup/`).
    UpdateThingGroup = "iot:UpdateThingGroup" => ThingGroup,
}

impl Action {
    /// Parses an action name case-insensitively (`iot:publish` is `iot:Publish`); no wildcards.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL
            .iter()
            .copied()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// The action's word in an [`ActionSet`] and its bit in that word (at most 256 actions: a
    /// test checks `COUNT <= 256`).
    fn word_bit(self) -> (usize, u64) {
        let i = self as usize;
        (i / 64, 1u64 << (i % 64))
    }

    /// Whether this is a control-plane operation (`iot:CreateThing`, ...) rather than an
    /// action a device performs over MQTT or the data-plane HTTPS API.
    pub fn is_control_plane(self) -> bool {
        self >= Action::FIRST_CONTROL_PLANE
    }

    const FIRST_CONTROL_PLANE: Action = Action::AddThingToThingGroup;
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of actions, stored as a bit set (one bit per [`Action`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ActionSet([u64; 4]);

impl ActionSet {
    /// The empty set.
    pub const EMPTY: ActionSet = ActionSet([0; 4]);

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
        let (w, b) = action.word_bit();
        if let Some(word) = self.0.get_mut(w) {
            *word |= b;
        }
    }

    /// Whether the set holds `action`.
    pub fn contains(self, action: Action) -> bool {
        let (w, b) = action.word_bit();
        self.0.get(w).is_some_and(|word| word & b != 0)
    }

    /// Set union.
    pub fn union(self, other: ActionSet) -> ActionSet {
        ActionSet(std::array::from_fn(|i| self.0[i] | other.0[i]))
    }

    /// The actions not in this set.
    pub fn complement(self) -> ActionSet {
        let all = ActionSet::all();
        ActionSet(std::array::from_fn(|i| all.0[i] & !self.0[i]))
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == [0; 4]
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
    fn every_action_has_a_bit_in_an_action_set() {
        const { assert!(Action::COUNT <= 256) };
        assert_eq!(ActionSet::all().iter().count(), Action::COUNT);
    }

    #[test]
    fn control_plane_actions_follow_the_data_plane_ones() {
        assert!(!Action::AssumeRoleWithCertificate.is_control_plane());
        assert!(Action::CreateThing.is_control_plane());
        assert_eq!(
            Action::ALL.iter().filter(|a| a.is_control_plane()).count(),
            114 // 85, and Device Defender's 29 audit and detect operations
        );
        // The device API's DescribeJobExecution is also a control-plane operation: one action.
        assert_eq!(
            Action::DescribeJobExecution.resource_type(),
            ResourceType::Thing
        );
        assert_eq!(Action::CreateJob.resource_type(), ResourceType::Job);
        assert_eq!(
            ResourceType::from_prefix("jobtemplate"),
            Some(ResourceType::JobTemplate)
        );
        assert_eq!(
            Action::from_name("iot:creatething"),
            Some(Action::CreateThing)
        );
        assert_eq!(Action::CreateThing.resource_type(), ResourceType::Thing);
        assert_eq!(Action::ListThings.resource_type(), ResourceType::Any);
        assert_eq!(
            ResourceType::from_prefix("thinggroup"),
            Some(ResourceType::ThingGroup)
        );
    }

    #[test]
    fn delete_pattern_matches_only_delete_operations() {
        let d = ActionSet::matching("iot:Delete*");
        assert!(d.contains(Action::DeleteThing));
        assert!(d.contains(Action::DeleteThingShadow));
        assert!(!d.contains(Action::DescribeThing));
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
