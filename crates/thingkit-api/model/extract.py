#!/usr/bin/env python3
"""Writes model/iot.json: the operations thingkit serves, cut from botocore's service models.

botocore (Apache-2.0) ships AWS's service models as data: data/iot/2015-05-28/service-2.json and
data/iot-data/2015-05-28/service-2.json. This keeps, for each operation we serve, its HTTP
binding, input and output shapes and error shapes, and every shape they reach, without the
documentation strings. The server binds and validates requests from this file, so a request
is refused exactly where the model says (required members, lengths, ranges, patterns, enums).

Run: python3 model/extract.py  (needs `pip install botocore`; the version used is recorded).
"""
import gzip, json, os, sys
import botocore

ROOT = os.path.join(os.path.dirname(botocore.__file__), "data")

IOT = """CreateThing DescribeThing ListThings UpdateThing DeleteThing
CreateThingType DescribeThingType ListThingTypes DeprecateThingType DeleteThingType
CreateThingGroup DescribeThingGroup ListThingGroups UpdateThingGroup DeleteThingGroup
AddThingToThingGroup RemoveThingFromThingGroup ListThingsInThingGroup ListThingGroupsForThing
CreateKeysAndCertificate CreateCertificateFromCsr RegisterCertificate RegisterCertificateWithoutCA
DescribeCertificate ListCertificates ListCertificatesByCA UpdateCertificate DeleteCertificate
RegisterCACertificate DescribeCACertificate ListCACertificates UpdateCACertificate DeleteCACertificate
GetRegistrationCode
CreatePolicy GetPolicy ListPolicies DeletePolicy CreatePolicyVersion GetPolicyVersion
ListPolicyVersions SetDefaultPolicyVersion DeletePolicyVersion
AttachPolicy DetachPolicy AttachPrincipalPolicy DetachPrincipalPolicy ListAttachedPolicies
ListTargetsForPolicy ListPrincipalPolicies
AttachThingPrincipal DetachThingPrincipal ListThingPrincipals ListPrincipalThings
GetEffectivePolicies TestAuthorization
CreateProvisioningTemplate DescribeProvisioningTemplate ListProvisioningTemplates
UpdateProvisioningTemplate DeleteProvisioningTemplate
DescribeEndpoint
CreateJob DescribeJob ListJobs CancelJob DeleteJob UpdateJob ListJobExecutionsForJob
ListJobExecutionsForThing DescribeJobExecution CancelJobExecution DeleteJobExecution GetJobDocument
AssociateTargetsWithJob CreateJobTemplate DescribeJobTemplate ListJobTemplates DeleteJobTemplate
CreateTopicRule GetTopicRule ListTopicRules ReplaceTopicRule EnableTopicRule DisableTopicRule DeleteTopicRule
StartOnDemandAuditTask DescribeAuditTask ListAuditTasks CancelAuditTask ListAuditFindings DescribeAuditFinding
DescribeAccountAuditConfiguration UpdateAccountAuditConfiguration
CreateScheduledAudit DescribeScheduledAudit ListScheduledAudits UpdateScheduledAudit DeleteScheduledAudit
CreateAuditSuppression DescribeAuditSuppression ListAuditSuppressions UpdateAuditSuppression DeleteAuditSuppression
CreateSecurityProfile DescribeSecurityProfile ListSecurityProfiles UpdateSecurityProfile DeleteSecurityProfile
AttachSecurityProfile DetachSecurityProfile ListTargetsForSecurityProfile ListSecurityProfilesForTarget
ListActiveViolations ListViolationEvents""".split()

DATA = ["Publish", "GetThingShadow", "UpdateThingShadow", "DeleteThingShadow", "ListNamedShadowsForThing"]


def load(service):
    base = os.path.join(ROOT, service, "2015-05-28", "service-2.json")
    if os.path.exists(base):
        return json.load(open(base))
    return json.load(gzip.open(base + ".gz"))


def strip(shape):
    return {k: v for k, v in shape.items() if k not in ("documentation", "deprecatedMessage")}


def cut(model, names):
    ops, shapes, todo = {}, {}, []
    for name in names:
        op = model["operations"][name]
        ops[name] = {k: op[k] for k in ("http", "input", "output", "errors") if k in op}
        for k in ("input", "output"):
            if k in op:
                todo.append(op[k]["shape"])
        todo += [e["shape"] for e in op.get("errors", [])]
    while todo:
        s = todo.pop()
        if s in shapes:
            continue
        shape = strip(model["shapes"][s])
        if "members" in shape:
            shape["members"] = {m: strip(v) for m, v in shape["members"].items()}
            todo += [v["shape"] for v in shape["members"].values()]
        for k in ("member", "key", "value"):
            if k in shape:
                shape[k] = strip(shape[k])
                todo.append(shape[k]["shape"])
        shapes[s] = shape
    return {"metadata": {k: model["metadata"][k] for k in ("apiVersion", "protocol", "signingName", "endpointPrefix")},
            "operations": ops, "shapes": dict(sorted(shapes.items()))}


out = {
    "botocore": botocore.__version__,
    "iot": cut(load("iot"), IOT),
    "iot-data": cut(load("iot-data"), DATA),
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "iot.json")
with open(path, "w") as f:
    json.dump(out, f, indent=1, sort_keys=False)
    f.write("\n")
print(f"{path}: {len(out['iot']['operations'])} + {len(out['iot-data']['operations'])} operations, botocore {botocore.__version__}", file=sys.stderr)
