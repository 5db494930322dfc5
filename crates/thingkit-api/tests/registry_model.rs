//! The registry after any sequence of API calls equals what the same calls, read with AWS's
//! semantics, produce through the Rust `Registry` API on a second registry; and every call
//! succeeds or fails on both alike. Names come from a small alphabet so they collide: the
//! interesting cases (creating twice, deleting what does not exist, groups with members or
//! children, deprecated types, policies attached or with versions left) come up often.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use thingkit_api::keys::KeyStore;
use thingkit_api::{ControlPlane, Input};
use thingkit_policy::ArnPrefix;
use thingkit_provision::{
    MemoryStore, PolicyTarget, Registry, RegistryLimits, RegistryStore, StoredPolicy, Thing,
    ThingGroup, ThingType,
};

const THINGS: [&str; 3] = ["t0", "t1", "t2"];
const TYPES: [&str; 2] = ["ty0", "ty1"];
const GROUPS: [&str; 3] = ["g0", "g1", "g2"];
const KEYS: [&str; 4] = ["a", "b", "c", "d"];
const VALUES: [&str; 3] = ["", "1", "2"];
const ARN: &str = "arn:aws:iot:us-east-1:123456789012:";
const POLICIES: [&str; 2] = ["p0", "p1"];
/// Two valid policy documents (versions alternate between them).
const DOCUMENTS: [&str; 2] = [
    r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}"#,
    r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "iot:Publish", "Resource": "*"}]}"#,
];

#[derive(Clone, Debug)]
enum TypeChange {
    Keep,
    Remove,
    Set(usize),
}

#[derive(Clone, Debug)]
enum Op {
    CreateThing {
        thing: usize,
        ty: Option<usize>,
        attributes: BTreeMap<usize, usize>,
    },
    UpdateThing {
        thing: usize,
        ty: TypeChange,
        /// `merge` and the attributes of the payload.
        payload: Option<(bool, BTreeMap<usize, usize>)>,
        expected: Option<u64>,
    },
    DeleteThing {
        thing: usize,
        expected: Option<u64>,
    },
    CreateThingType {
        ty: usize,
        described: bool,
    },
    DeprecateThingType {
        ty: usize,
        undo: bool,
    },
    CreateThingGroup {
        group: usize,
        parent: Option<usize>,
        described: bool,
    },
    AddThingToThingGroup {
        thing: usize,
        group: usize,
        by_arn: bool,
    },
    RemoveThingFromThingGroup {
        thing: usize,
        group: usize,
        by_arn: bool,
    },
    DeleteThingGroup {
        group: usize,
        expected: Option<u64>,
    },
    CreatePolicy {
        policy: usize,
        document: usize,
    },
    CreatePolicyVersion {
        policy: usize,
        document: usize,
        default: bool,
    },
    SetDefaultPolicyVersion {
        policy: usize,
        version: u32,
    },
    DeletePolicyVersion {
        policy: usize,
        version: u32,
    },
    DeletePolicy {
        policy: usize,
    },
    AttachPolicy {
        policy: usize,
        group: usize,
    },
    DetachPolicy {
        policy: usize,
        group: usize,
    },
}

fn attributes() -> impl Strategy<Value = BTreeMap<usize, usize>> {
    prop::collection::btree_map(0..KEYS.len(), 0..VALUES.len(), 0..=4)
}

fn op() -> impl Strategy<Value = Op> {
    let thing = 0..THINGS.len();
    let ty = 0..TYPES.len();
    let group = 0..GROUPS.len();
    let version = prop::option::of(1u64..4);
    prop_oneof![
        3 => (thing.clone(), prop::option::of(ty.clone()), attributes())
            .prop_map(|(thing, ty, attributes)| Op::CreateThing { thing, ty, attributes }),
        3 => (
            thing.clone(),
            prop_oneof![
                2 => Just(TypeChange::Keep),
                1 => Just(TypeChange::Remove),
                1 => ty.clone().prop_map(TypeChange::Set),
            ],
            prop::option::of((any::<bool>(), attributes())),
            version.clone(),
        )
            .prop_map(|(thing, ty, payload, expected)| Op::UpdateThing {
                thing,
                ty,
                payload,
                expected,
            }),
        1 => (thing.clone(), version.clone())
            .prop_map(|(thing, expected)| Op::DeleteThing { thing, expected }),
        2 => (ty.clone(), any::<bool>())
            .prop_map(|(ty, described)| Op::CreateThingType { ty, described }),
        1 => (ty, any::<bool>()).prop_map(|(ty, undo)| Op::DeprecateThingType { ty, undo }),
        2 => (group.clone(), prop::option::of(group.clone()), any::<bool>()).prop_map(
            |(group, parent, described)| Op::CreateThingGroup { group, parent, described }
        ),
        3 => (thing.clone(), group.clone(), any::<bool>()).prop_map(|(thing, group, by_arn)| {
            Op::AddThingToThingGroup { thing, group, by_arn }
        }),
        2 => (thing, group.clone(), any::<bool>()).prop_map(|(thing, group, by_arn)| {
            Op::RemoveThingFromThingGroup { thing, group, by_arn }
        }),
        1 => (group, version)
            .prop_map(|(group, expected)| Op::DeleteThingGroup { group, expected }),
        7 => policy_op(),
    ]
}

/// Policy operations, and the groups they attach to coming and going.
fn policy_op() -> impl Strategy<Value = Op> {
    let group = 0..GROUPS.len();
    prop_oneof![
        1 => (group.clone(), prop::option::of(group.clone()), any::<bool>()).prop_map(
            |(group, parent, described)| Op::CreateThingGroup { group, parent, described }
        ),
        1 => (group.clone(), Just(None))
            .prop_map(|(group, expected)| Op::DeleteThingGroup { group, expected }),
        2 => (0..POLICIES.len(), 0..DOCUMENTS.len())
            .prop_map(|(policy, document)| Op::CreatePolicy { policy, document }),
        4 => (0..POLICIES.len(), 0..DOCUMENTS.len(), any::<bool>()).prop_map(
            |(policy, document, default)| Op::CreatePolicyVersion { policy, document, default }
        ),
        1 => (0..POLICIES.len(), 1u32..7)
            .prop_map(|(policy, version)| Op::SetDefaultPolicyVersion { policy, version }),
        1 => (0..POLICIES.len(), 1u32..7)
            .prop_map(|(policy, version)| Op::DeletePolicyVersion { policy, version }),
        1 => (0..POLICIES.len()).prop_map(|policy| Op::DeletePolicy { policy }),
        2 => (0..POLICIES.len(), group.clone())
            .prop_map(|(policy, group)| Op::AttachPolicy { policy, group }),
        1 => (0..POLICIES.len(), group)
            .prop_map(|(policy, group)| Op::DetachPolicy { policy, group }),
    ]
}

fn description(described: bool) -> Option<&'static str> {
    described.then_some("a description")
}

fn payload_json(attributes: &BTreeMap<usize, usize>) -> Value {
    Value::Object(
        attributes
            .iter()
            .map(|(k, v)| (KEYS[*k].to_string(), json!(VALUES[*v])))
            .collect::<Map<_, _>>(),
    )
}

/// The API request for `op`.
fn request(op: &Op) -> (&'static str, Value) {
    if let Some(r) = policy_request(op) {
        return r;
    }
    match op {
        Op::CreateThing {
            thing,
            ty,
            attributes,
        } => {
            let mut input = json!({
                "thingName": THINGS[*thing],
                "attributePayload": {"attributes": payload_json(attributes)},
            });
            if let Some(ty) = ty {
                input["thingTypeName"] = json!(TYPES[*ty]);
            }
            ("CreateThing", input)
        }
        Op::UpdateThing {
            thing,
            ty,
            payload,
            expected,
        } => {
            let mut input = json!({"thingName": THINGS[*thing]});
            match ty {
                TypeChange::Keep => {}
                TypeChange::Remove => input["removeThingType"] = json!(true),
                TypeChange::Set(t) => input["thingTypeName"] = json!(TYPES[*t]),
            }
            if let Some((merge, attributes)) = payload {
                input["attributePayload"] =
                    json!({"attributes": payload_json(attributes), "merge": merge});
            }
            if let Some(v) = expected {
                input["expectedVersion"] = json!(v);
            }
            ("UpdateThing", input)
        }
        Op::DeleteThing { thing, expected } => {
            let mut input = json!({"thingName": THINGS[*thing]});
            if let Some(v) = expected {
                input["expectedVersion"] = json!(v);
            }
            ("DeleteThing", input)
        }
        Op::CreateThingType { ty, described } => {
            let mut input = json!({"thingTypeName": TYPES[*ty]});
            if let Some(d) = description(*described) {
                input["thingTypeProperties"] = json!({"thingTypeDescription": d});
            }
            ("CreateThingType", input)
        }
        Op::DeprecateThingType { ty, undo } => (
            "DeprecateThingType",
            json!({"thingTypeName": TYPES[*ty], "undoDeprecate": undo}),
        ),
        Op::CreateThingGroup {
            group,
            parent,
            described,
        } => {
            let mut input = json!({"thingGroupName": GROUPS[*group]});
            if let Some(p) = parent {
                input["parentGroupName"] = json!(GROUPS[*p]);
            }
            if let Some(d) = description(*described) {
                input["thingGroupProperties"] = json!({"thingGroupDescription": d});
            }
            ("CreateThingGroup", input)
        }
        Op::AddThingToThingGroup {
            thing,
            group,
            by_arn,
        } => ("AddThingToThingGroup", membership(*thing, *group, *by_arn)),
        Op::RemoveThingFromThingGroup {
            thing,
            group,
            by_arn,
        } => (
            "RemoveThingFromThingGroup",
            membership(*thing, *group, *by_arn),
        ),
        Op::DeleteThingGroup { group, expected } => {
            let mut input = json!({"thingGroupName": GROUPS[*group]});
            if let Some(v) = expected {
                input["expectedVersion"] = json!(v);
            }
            ("DeleteThingGroup", input)
        }
        _ => unreachable!("policy operations are built by policy_request"),
    }
}

fn policy_request(op: &Op) -> Option<(&'static str, Value)> {
    Some(match op {
        Op::CreatePolicy { policy, document } => (
            "CreatePolicy",
            json!({"policyName": POLICIES[*policy], "policyDocument": DOCUMENTS[*document]}),
        ),
        Op::CreatePolicyVersion {
            policy,
            document,
            default,
        } => (
            "CreatePolicyVersion",
            json!({"policyName": POLICIES[*policy], "policyDocument": DOCUMENTS[*document],
                   "setAsDefault": default}),
        ),
        Op::SetDefaultPolicyVersion { policy, version } => (
            "SetDefaultPolicyVersion",
            json!({"policyName": POLICIES[*policy], "policyVersionId": version.to_string()}),
        ),
        Op::DeletePolicyVersion { policy, version } => (
            "DeletePolicyVersion",
            json!({"policyName": POLICIES[*policy], "policyVersionId": version.to_string()}),
        ),
        Op::DeletePolicy { policy } => ("DeletePolicy", json!({"policyName": POLICIES[*policy]})),
        Op::AttachPolicy { policy, group } => (
            "AttachPolicy",
            json!({"policyName": POLICIES[*policy],
                   "target": format!("{ARN}thinggroup/{}", GROUPS[*group])}),
        ),
        Op::DetachPolicy { policy, group } => (
            "DetachPolicy",
            json!({"policyName": POLICIES[*policy],
                   "target": format!("{ARN}thinggroup/{}", GROUPS[*group])}),
        ),
        _ => return None,
    })
}

/// `op`, a policy operation, applied to `r` with AWS's semantics: versions count to five,
/// the default version cannot be deleted, a policy goes only when it is attached nowhere and
/// has no other versions, attaching twice and detaching what is not attached succeed.
fn apply_policy(r: &mut Registry, op: &Op, now: SystemTime) -> Result<(), Refused> {
    match op {
        Op::CreatePolicy { policy, document } => {
            r.create_policy(POLICIES[*policy], DOCUMENTS[*document], now)?;
        }
        Op::CreatePolicyVersion {
            policy,
            document,
            default,
        } => {
            let p = r.policy(POLICIES[*policy]).ok_or(Refused)?;
            if p.versions.len() >= 5 {
                return Err(Refused);
            }
            r.create_policy_version(POLICIES[*policy], DOCUMENTS[*document], *default, now)?;
        }
        Op::SetDefaultPolicyVersion { policy, version } => {
            r.set_default_policy_version(POLICIES[*policy], *version)?;
        }
        Op::DeletePolicyVersion { policy, version } => {
            let p = r.policy(POLICIES[*policy]).ok_or(Refused)?;
            if p.default_version_id == *version {
                return Err(Refused);
            }
            r.delete_policy_version(POLICIES[*policy], *version)?;
        }
        Op::DeletePolicy { policy } => {
            let name = POLICIES[*policy];
            let p = r.policy(name).ok_or(Refused)?;
            let attached = GROUPS.iter().any(|g| {
                r.thing_group(g)
                    .is_some_and(|g| g.policies.iter().any(|x| &**x == name))
            });
            if attached || p.versions.len() > 1 {
                return Err(Refused);
            }
            r.delete_policy(name)?;
        }
        Op::AttachPolicy { policy, group } => {
            r.attach_policy(
                POLICIES[*policy],
                &PolicyTarget::ThingGroup(GROUPS[*group].into()),
            )?;
        }
        Op::DetachPolicy { policy, group } => {
            let (name, group) = (POLICIES[*policy], GROUPS[*group]);
            r.policy(name).ok_or(Refused)?;
            let g = r.thing_group(group).ok_or(Refused)?;
            if g.policies.iter().any(|x| &**x == name) {
                r.detach_policy(name, &PolicyTarget::ThingGroup(group.into()))?;
            }
        }
        _ => unreachable!("not a policy operation"),
    }
    Ok(())
}

/// A policy as the comparison sees it: its default version and (id, text) of each version.
type PolicyView = (u32, Vec<(u32, String)>);

/// The [`PolicyView`] of `p`.
fn policy_view(p: &StoredPolicy) -> PolicyView {
    (
        p.default_version_id,
        p.versions
            .iter()
            .map(|v| (v.version_id, v.document.text().to_string()))
            .collect(),
    )
}

fn membership(thing: usize, group: usize, by_arn: bool) -> Value {
    if by_arn {
        json!({
            "thingArn": format!("{ARN}thing/{}", THINGS[thing]),
            "thingGroupArn": format!("{ARN}thinggroup/{}", GROUPS[group]),
        })
    } else {
        json!({"thingName": THINGS[thing], "thingGroupName": GROUPS[group]})
    }
}

/// A refusal of the reference model.
#[derive(Debug)]
struct Refused;

impl From<thingkit_provision::Error> for Refused {
    fn from(_: thingkit_provision::Error) -> Refused {
        Refused
    }
}

fn version_matches(expected: Option<u64>, version: u64) -> Result<(), Refused> {
    match expected {
        Some(v) if v != version => Err(Refused),
        _ => Ok(()),
    }
}

/// `op` applied to `r` through the Rust API, with AWS's semantics of the operation.
fn apply(r: &mut Registry, op: &Op, now: SystemTime) -> Result<(), Refused> {
    if policy_request(op).is_some() {
        return apply_policy(r, op, now);
    }
    match op {
        Op::CreateThing {
            thing,
            ty,
            attributes,
        } => {
            let attributes: Vec<(&str, &str)> = attributes
                .iter()
                .map(|(k, v)| (KEYS[*k], VALUES[*v]))
                .collect();
            r.create_thing(THINGS[*thing], ty.map(|t| TYPES[t]), &attributes)?;
        }
        Op::UpdateThing {
            thing,
            ty,
            payload,
            expected,
        } => {
            let name = THINGS[*thing];
            let current = r.thing(name).ok_or(Refused)?;
            version_matches(*expected, current.version)?;
            let mut changes: Vec<(&str, Option<&str>)> = Vec::new();
            if let Some((merge, attributes)) = payload {
                if !merge {
                    // Replace: everything not given goes.
                    for k in current.attributes.keys() {
                        if let Some(key) = KEYS.iter().find(|key| **key == &**k)
                            && !attributes.keys().any(|a| KEYS[*a] == *key)
                        {
                            changes.push((key, None));
                        }
                    }
                }
                for (k, v) in attributes {
                    let value = VALUES[*v];
                    changes.push((KEYS[*k], (!value.is_empty()).then_some(value)));
                }
            }
            let ty = match ty {
                TypeChange::Keep => None,
                TypeChange::Remove => Some(None),
                TypeChange::Set(t) => Some(Some(TYPES[*t])),
            };
            r.update_thing(name, ty, &changes)?;
        }
        Op::DeleteThing { thing, expected } => {
            let name = THINGS[*thing];
            if let Some(t) = r.thing(name) {
                version_matches(*expected, t.version)?;
                r.delete_thing(name)?;
            }
        }
        Op::CreateThingType { ty, described } => {
            r.create_thing_type_at(TYPES[*ty], description(*described), &[], now)?;
        }
        Op::DeprecateThingType { ty, undo } => {
            r.deprecate_thing_type_at(TYPES[*ty], *undo, now)?;
        }
        Op::CreateThingGroup {
            group,
            parent,
            described,
        } => {
            r.create_thing_group_at(
                GROUPS[*group],
                parent.map(|p| GROUPS[p]),
                description(*described),
                &[],
                now,
            )?;
        }
        Op::AddThingToThingGroup { thing, group, .. } => {
            r.add_thing_to_group(THINGS[*thing], GROUPS[*group])?;
        }
        Op::RemoveThingFromThingGroup { thing, group, .. } => {
            let (thing, group) = (THINGS[*thing], GROUPS[*group]);
            r.thing_group(group).ok_or(Refused)?;
            let t = r.thing(thing).ok_or(Refused)?;
            if t.groups.iter().any(|g| &**g == group) {
                r.remove_thing_from_group(thing, group)?;
            }
        }
        Op::DeleteThingGroup { group, expected } => {
            let name = GROUPS[*group];
            let Some(g) = r.thing_group(name) else {
                return Ok(());
            };
            version_matches(*expected, g.version)?;
            if GROUPS.iter().any(|c| {
                r.thing_group(c)
                    .is_some_and(|c| c.parent.as_deref() == Some(name))
            }) {
                return Err(Refused);
            }
            let members: Vec<&str> = THINGS
                .iter()
                .copied()
                .filter(|t| {
                    r.thing(t)
                        .is_some_and(|t| t.groups.iter().any(|g| &**g == name))
                })
                .collect();
            r.batch(|r| {
                for t in &members {
                    r.remove_thing_from_group(t, name)?;
                }
                r.delete_thing_group(name)
            })?;
        }
        _ => unreachable!("policy operations are applied by apply_policy"),
    }
    Ok(())
}

type Snapshot = (
    Vec<(String, Thing)>,
    Vec<(String, ThingType)>,
    Vec<(String, ThingGroup)>,
    Vec<(String, PolicyView)>,
);

fn snapshot<S: RegistryStore>(r: &Registry<S>) -> Snapshot {
    let mut things: Vec<(String, Thing)> = r
        .things()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let mut types: Vec<(String, ThingType)> = r
        .thing_types()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    let mut groups: Vec<(String, ThingGroup)> = r
        .thing_groups()
        .map(|(n, g)| (n.to_string(), g.clone()))
        .collect();
    things.sort_by(|a, b| a.0.cmp(&b.0));
    types.sort_by(|a, b| a.0.cmp(&b.0));
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let mut policies: Vec<(String, PolicyView)> = r
        .policies()
        .map(|p| (p.name.to_string(), policy_view(p)))
        .collect();
    policies.sort_by(|a, b| a.0.cmp(&b.0));
    (things, types, groups, policies)
}

/// What the API answers about the things agrees with the reference registry.
fn check_reads(plane: &ControlPlane<MemoryStore>, model: &Registry, now: SystemTime) {
    for name in THINGS {
        let answer = plane.call(
            "DescribeThing",
            Input::from_json(json!({"thingName": name})),
            now,
        );
        match (answer, model.thing(name)) {
            (Ok(d), Some(t)) => {
                assert_eq!(d["version"], json!(t.version));
                assert_eq!(d["thingTypeName"].as_str(), t.thing_type.as_deref());
                let attributes: BTreeMap<String, String> = t
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                assert_eq!(d["attributes"], json!(attributes));
                let groups = plane
                    .call(
                        "ListThingGroupsForThing",
                        Input::from_json(json!({"thingName": name})),
                        now,
                    )
                    .expect("the thing exists");
                let mut want: Vec<&str> = t.groups.iter().map(|g| &**g).collect();
                want.sort_unstable();
                let got: Vec<&str> = groups["thingGroups"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|g| g["groupName"].as_str()).collect())
                    .unwrap_or_default();
                assert_eq!(got, want);
            }
            (Err(e), None) => assert_eq!(e.code, "ResourceNotFoundException"),
            (answer, model) => panic!("DescribeThing {name}: API {answer:?}, model {model:?}"),
        }
    }
}

/// Runs `ops` through the API and through the Rust API, comparing after every step.
fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let plane = ControlPlane::new(
        Arc::new(RwLock::new(Registry::in_memory())),
        ArnPrefix::new("aws", "us-east-1", "123456789012").expect("a valid prefix"),
        Arc::new(KeyStore::default()),
    );
    let mut model = Registry::in_memory();
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for (i, op) in ops.iter().enumerate() {
        let now = start + Duration::from_secs(i as u64);
        let (operation, input) = request(op);
        let api = plane.call(operation, Input::from_json(input), now);
        let reference = apply(&mut model, op, now);
        prop_assert_eq!(
            api.is_ok(),
            reference.is_ok(),
            "step {}: {:?}: API {:?}, reference {:?}",
            i,
            op,
            api,
            reference
        );
        let registry = plane.registry.read().unwrap_or_else(|p| p.into_inner());
        prop_assert_eq!(
            snapshot(&registry),
            snapshot(&model),
            "after step {}: {:?}",
            i,
            op
        );
        drop(registry);
        check_reads(&plane, &model, now);
    }
    // What the API acknowledged is what its store holds.
    let registry = plane.registry.read().unwrap_or_else(|p| p.into_inner());
    let reopened = Registry::open(registry.store().clone(), RegistryLimits::default())
        .expect("the store reopens");
    prop_assert_eq!(snapshot(&reopened), snapshot(&registry));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn registry_after_api_calls_equals_registry_after_the_same_rust_calls(
        ops in prop::collection::vec(op(), 1..40)
    ) {
        run(&ops)?;
    }

    #[test]
    fn policies_after_api_calls_equal_policies_after_the_same_rust_calls(
        ops in prop::collection::vec(policy_op(), 1..40)
    ) {
        run(&ops)?;
    }
}
