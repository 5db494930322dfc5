//! The AWS developer guide's worked examples (digest A.5) as data: request → the exact
//! accepted / delta / documents / rejected payloads, compared as JSON values.

use serde_json::{Value, json};
use thingkit_shadow::{Limits, MemoryShadowStore, OutMessage, Shadows};

struct Sim {
    shadows: Shadows<MemoryShadowStore>,
}

impl Sim {
    fn new() -> Self {
        Sim {
            shadows: Shadows::new(MemoryShadowStore::new(), Limits::default()),
        }
    }

    fn send(&mut self, topic: &str, payload: &str, now: u64) -> Vec<OutMessage> {
        self.shadows
            .request(topic, payload.as_bytes(), now)
            .expect("a shadow request topic")
    }
}

fn body(out: &[OutMessage], topic: &str) -> Value {
    let m = out
        .iter()
        .find(|m| m.topic == topic)
        .unwrap_or_else(|| panic!("no message on {topic}: {out:?}"));
    serde_json::from_slice(&m.payload).expect("our payloads are JSON")
}

fn topics(out: &[OutMessage]) -> Vec<&str> {
    out.iter().map(|m| m.topic.as_str()).collect()
}

/// AWS omits `timestamp` from some error documents (DSD23); we always send it (F-S8).
fn without_timestamp(mut v: Value) -> Value {
    assert!(
        v["timestamp"].is_u64(),
        "error documents carry a timestamp: {v}"
    );
    v.as_object_mut().unwrap().remove("timestamp");
    v
}

const SIM: &str = "$aws/things/mySimulatedThing/shadow/name/simShadow1";

/// DSU23 "using-device-shadows": the ColorRGB named-shadow walkthrough, every message of it.
/// The doc's shadow was at version 3 when it starts; two earlier reports give it that history.
#[test]
fn doc_colorrgb_named_shadow() {
    let mut sim = Sim::new();
    let get = format!("{SIM}/get");
    let update = format!("{SIM}/update");

    // Step 1: get before the shadow exists → 404.
    let out = sim.send(&get, "", 1591140000);
    assert_eq!(topics(&out), [format!("{SIM}/get/rejected")]);
    assert_eq!(
        without_timestamp(body(&out, &format!("{SIM}/get/rejected"))),
        json!({"code": 404, "message": "No shadow exists with name: 'simShadow1'"})
    );

    // Step 2: the device creates it (three times, so that the version is the doc's 3).
    let report = r#"{
      "state": {
        "reported": {
          "ID": "SmartLamp21",
          "ColorRGB": [
            128,
            128,
            128
          ]
        }
      },
      "clientToken": "426bfd96-e720-46d3-95cd-014e3ef12bb6"
    }"#;
    for _ in 0..3 {
        sim.send(&update, report, 1591140517);
    }
    let out = sim.send(
        &get,
        r#"{"clientToken":"426bfd96-e720-46d3-95cd-014e3ef12bb6"}"#,
        1591140517,
    );
    assert_eq!(
        body(&out, &format!("{SIM}/get/accepted")),
        json!({
          "state": {"reported": {"ID": "SmartLamp21", "ColorRGB": [128, 128, 128]}},
          "metadata": {"reported": {
            "ID": {"timestamp": 1591140517},
            "ColorRGB": [{"timestamp": 1591140517}, {"timestamp": 1591140517}, {"timestamp": 1591140517}]
          }},
          "version": 3,
          "timestamp": 1591140517,
          "clientToken": "426bfd96-e720-46d3-95cd-014e3ef12bb6"
        })
    );
    assert_eq!(
        sim.shadows
            .get_document(
                &thingkit_shadow::ShadowKey::named("mySimulatedThing", "simShadow1").unwrap(),
                1591141111
            )
            .unwrap()
            .map(|b| serde_json::from_slice::<Value>(&b).unwrap()),
        Some(json!({
          "state": {"reported": {"ID": "SmartLamp21", "ColorRGB": [128, 128, 128]}},
          "metadata": {"reported": {
            "ID": {"timestamp": 1591140517},
            "ColorRGB": [{"timestamp": 1591140517}, {"timestamp": 1591140517}, {"timestamp": 1591140517}]
          }},
          "version": 3,
          "timestamp": 1591141111
        }))
    );

    // Step 3: the app sets desired → accepted and delta.
    let out = sim.send(
        &update,
        r#"{"state":{"desired":{"ColorRGB":[255,255,0]}},"clientToken":"21b21b21-bfd2-4279-8c65-e2f697ff4fab"}"#,
        1591141596,
    );
    assert_eq!(
        body(&out, &format!("{SIM}/update/accepted")),
        json!({
          "state": {"desired": {"ColorRGB": [255, 255, 0]}},
          "metadata": {"desired": {"ColorRGB": [{"timestamp": 1591141596}, {"timestamp": 1591141596}, {"timestamp": 1591141596}]}},
          "version": 4,
          "timestamp": 1591141596,
          "clientToken": "21b21b21-bfd2-4279-8c65-e2f697ff4fab"
        })
    );
    assert_eq!(
        body(&out, &format!("{SIM}/update/delta")),
        json!({
          "version": 4,
          "timestamp": 1591141596,
          "state": {"ColorRGB": [255, 255, 0]},
          "metadata": {"ColorRGB": [{"timestamp": 1591141596}, {"timestamp": 1591141596}, {"timestamp": 1591141596}]},
          "clientToken": "21b21b21-bfd2-4279-8c65-e2f697ff4fab"
        })
    );

    // Step 4: the device reports the new colour → accepted and documents; no delta is left.
    let out = sim.send(
        &update,
        r#"{
          "state": {
            "reported": {
              "ColorRGB": [255,255,0]
              }
          },
          "clientToken": "a4dc2227-9213-4c6a-a6a5-053304f60258"
        }"#,
        1591142747,
    );
    assert_eq!(
        topics(&out),
        [
            format!("{SIM}/update/accepted"),
            format!("{SIM}/update/documents")
        ]
    );
    assert_eq!(
        body(&out, &format!("{SIM}/update/accepted")),
        json!({
          "state": {"reported": {"ColorRGB": [255, 255, 0]}},
          "metadata": {"reported": {"ColorRGB": [{"timestamp": 1591142747}, {"timestamp": 1591142747}, {"timestamp": 1591142747}]}},
          "version": 5,
          "timestamp": 1591142747,
          "clientToken": "a4dc2227-9213-4c6a-a6a5-053304f60258"
        })
    );
    let desired_meta = json!({"ColorRGB": [{"timestamp": 1591141596}, {"timestamp": 1591141596}, {"timestamp": 1591141596}]});
    assert_eq!(
        body(&out, &format!("{SIM}/update/documents")),
        json!({
          "previous": {
            "state": {
              "desired": {"ColorRGB": [255, 255, 0]},
              "reported": {"ID": "SmartLamp21", "ColorRGB": [128, 128, 128]}
            },
            "metadata": {
              "desired": desired_meta,
              "reported": {
                "ID": {"timestamp": 1591140517},
                "ColorRGB": [{"timestamp": 1591140517}, {"timestamp": 1591140517}, {"timestamp": 1591140517}]
              }
            },
            "version": 4
          },
          "current": {
            "state": {
              "desired": {"ColorRGB": [255, 255, 0]},
              "reported": {"ID": "SmartLamp21", "ColorRGB": [255, 255, 0]}
            },
            "metadata": {
              "desired": desired_meta,
              "reported": {
                "ID": {"timestamp": 1591140517},
                "ColorRGB": [{"timestamp": 1591142747}, {"timestamp": 1591142747}, {"timestamp": 1591142747}]
              }
            },
            "version": 5
          },
          "timestamp": 1591142747,
          "clientToken": "a4dc2227-9213-4c6a-a6a5-053304f60258"
        })
    );

    // Step 5: the app reads it back: no delta, desired kept (the service never clears it).
    let out = sim.send(&get, "", 1591143269);
    assert_eq!(
        body(&out, &format!("{SIM}/get/accepted")),
        json!({
          "state": {
            "desired": {"ColorRGB": [255, 255, 0]},
            "reported": {"ID": "SmartLamp21", "ColorRGB": [255, 255, 0]}
          },
          "metadata": {
            "desired": desired_meta,
            "reported": {
              "ID": {"timestamp": 1591140517},
              "ColorRGB": [{"timestamp": 1591142747}, {"timestamp": 1591142747}, {"timestamp": 1591142747}]
            }
          },
          "version": 5,
          "timestamp": 1591143269
        })
    );
}

const LAMP: &str = "$aws/things/lightbulb/shadow";

/// DSDF20 light-bulb walkthrough: the device reports green and clears desired in one update;
/// the accepted body (verbatim in the digest A.3) echoes `"desired": null` with a timestamp.
#[test]
fn doc_lightbulb_walkthrough() {
    let mut sim = Sim::new();
    let update = format!("{LAMP}/update");
    // Creation: version 1, previous null (R-02).
    let out = sim.send(
        &update,
        r#"{"state":{"reported":{"color":"red"}}}"#,
        1469564700,
    );
    let docs = body(&out, &format!("{LAMP}/update/documents"));
    assert_eq!(docs["previous"], Value::Null);
    assert_eq!(docs["current"]["version"], 1);
    assert_eq!(body(&out, &format!("{LAMP}/update/accepted"))["version"], 1);
    // The app asks for green: a delta.
    let out = sim.send(
        &update,
        r#"{"state":{"desired":{"color":"green"}}}"#,
        1469564750,
    );
    assert_eq!(
        body(&out, &format!("{LAMP}/update/delta")),
        json!({"version": 2, "timestamp": 1469564750, "state": {"color": "green"},
               "metadata": {"color": {"timestamp": 1469564750}}})
    );
    // The device reports green and clears desired.
    let out = sim.send(
        &update,
        r#"{"state":{"reported":{"color":"green"},"desired":null}}"#,
        1469564801,
    );
    assert_eq!(
        body(&out, &format!("{LAMP}/update/accepted")),
        json!({"state":{"reported":{"color":"green"},"desired":null},
               "metadata":{"reported":{"color":{"timestamp":1469564801}},"desired":{"timestamp":1469564801}},
               "version":3,"timestamp":1469564801})
    );
    assert!(!topics(&out).iter().any(|t| t.ends_with("/delta")));
    let docs = body(&out, &format!("{LAMP}/update/documents"));
    assert_eq!(
        docs["current"],
        json!({"state": {"reported": {"color": "green"}},
               "metadata": {"reported": {"color": {"timestamp": 1469564801}}}, "version": 3})
    );
    // Delete: version and timestamp; get is then 404; re-creation continues the version (R-20).
    let out = sim.send(&format!("{LAMP}/delete"), "", 1469564900);
    assert_eq!(
        body(&out, &format!("{LAMP}/delete/accepted")),
        json!({"version": 3, "timestamp": 1469564900})
    );
    let out = sim.send(&format!("{LAMP}/get"), "", 1469564901);
    assert_eq!(body(&out, &format!("{LAMP}/get/rejected"))["code"], 404);
    assert_eq!(
        body(&out, &format!("{LAMP}/get/rejected"))["message"],
        "No shadow exists with name: 'lightbulb'"
    );
    let out = sim.send(
        &update,
        r#"{"state":{"reported":{"color":"blue"}}}"#,
        1469565000,
    );
    let docs = body(&out, &format!("{LAMP}/update/documents"));
    assert_eq!(docs["previous"], Value::Null);
    assert_eq!(docs["current"]["version"], 4);
    // More than 48 hours after a delete, a new shadow starts again at version 1.
    sim.send(&format!("{LAMP}/delete"), "", 1469566000);
    let out = sim.send(
        &update,
        r#"{"state":{"reported":{"color":"blue"}}}"#,
        1469566000 + 48 * 3600,
    );
    assert_eq!(body(&out, &format!("{LAMP}/update/accepted"))["version"], 1);
}

/// DSDF23 optimistic locking, exact: at version 10, `version: 9` → 409, `version: 10` → 11.
#[test]
fn doc_optimistic_locking() {
    let mut sim = Sim::new();
    let update = format!("{LAMP}/update");
    for i in 0..10 {
        sim.send(
            &update,
            &format!(r#"{{"state":{{"reported":{{"n":{i}}}}}}}"#),
            100,
        );
    }
    let out = sim.send(
        &update,
        r#"{"state":{"desired":{"color":"blue"}},"version":9,"clientToken":"426bfd96-e720-46d3-95cd-014e3ef12bb6"}"#,
        200,
    );
    assert_eq!(topics(&out), [format!("{LAMP}/update/rejected")]);
    assert_eq!(
        without_timestamp(body(&out, &format!("{LAMP}/update/rejected"))),
        json!({"code":409,"message":"Version conflict","clientToken":"426bfd96-e720-46d3-95cd-014e3ef12bb6"})
    );
    let out = sim.send(
        &update,
        r#"{"state":{"desired":{"color":"blue"}},"version":10}"#,
        201,
    );
    assert_eq!(
        body(&out, &format!("{LAMP}/update/accepted"))["version"],
        11
    );
}

/// DSD23 example document and delta-state example: desired-only fields and differing fields are
/// in the delta, arrays compared whole; reported-only fields are not.
#[test]
fn doc_delta_state_example() {
    let mut sim = Sim::new();
    let update = format!("{LAMP}/update");
    sim.send(
        &update,
        r#"{"state":{"desired":{"color":"RED","sequence":["RED","GREEN","BLUE"]},
                     "reported":{"color":"GREEN","extra":1}}}"#,
        12345,
    );
    let out = sim.send(
        &format!("{LAMP}/get"),
        r#"{"clientToken":"UniqueClientToken"}"#,
        123456789,
    );
    assert_eq!(
        body(&out, &format!("{LAMP}/get/accepted")),
        json!({
          "state": {
            "desired": {"color": "RED", "sequence": ["RED", "GREEN", "BLUE"]},
            "reported": {"color": "GREEN", "extra": 1},
            "delta": {"color": "RED", "sequence": ["RED", "GREEN", "BLUE"]}
          },
          "metadata": {
            "desired": {"color": {"timestamp": 12345},
                        "sequence": [{"timestamp": 12345}, {"timestamp": 12345}, {"timestamp": 12345}]},
            "reported": {"color": {"timestamp": 12345}, "extra": {"timestamp": 12345}}
          },
          "version": 1,
          "clientToken": "UniqueClientToken",
          "timestamp": 123456789
        })
    );
}

/// DSD23 nested delta: only the path to the differing leaf, "all the way to the root".
#[test]
fn doc_nested_delta_lights_color_g() {
    let mut sim = Sim::new();
    let out = sim.send(
        &format!("{LAMP}/update"),
        r#"{"state":{"desired":{"lights":{"color":{"r":255,"g":255,"b":255}}},
                     "reported":{"lights":{"color":{"r":255,"g":0,"b":255}}}}}"#,
        10,
    );
    let delta = body(&out, &format!("{LAMP}/update/delta"));
    assert_eq!(delta["state"], json!({"lights": {"color": {"g": 255}}}));
    assert_eq!(
        delta["metadata"],
        json!({"lights": {"color": {"g": {"timestamp": 10}}}})
    );
}

/// DSD23 arrays: an update replaces the whole array; an array with null is rejected.
#[test]
fn doc_arrays_replace_whole_and_refuse_null() {
    let mut sim = Sim::new();
    let update = format!("{LAMP}/update");
    sim.send(
        &update,
        r#"{"state":{"desired":{"colors":["RED","GREEN","BLUE"]}}}"#,
        1,
    );
    sim.send(&update, r#"{"state":{"desired":{"colors":["RED"]}}}"#, 2);
    let out = sim.send(&format!("{LAMP}/get"), "", 3);
    assert_eq!(
        body(&out, &format!("{LAMP}/get/accepted"))["state"]["desired"],
        json!({"colors": ["RED"]})
    );
    let out = sim.send(
        &update,
        r#"{"state":{"desired":{"colors":[null,"RED","GREEN"]}}}"#,
        4,
    );
    let rejected = body(&out, &format!("{LAMP}/update/rejected"));
    assert_eq!(rejected["code"], 400);
    assert!(
        rejected["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid JSON")
    );
}

/// DSU20 "Deleting Data": `"desired": null` removes the section, a null leaf removes the leaf.
#[test]
fn doc_deleting_data() {
    let mut sim = Sim::new();
    let update = format!("{LAMP}/update");
    sim.send(
        &update,
        r#"{"state":{"desired":{"lights":{"color":"RED"},"engine":"ON"},
                     "reported":{"lights":{"color":"GREEN"},"engine":"ON"}}}"#,
        1,
    );
    let out = sim.send(
        &update,
        r#"{"state":{"desired":null,"reported":{"engine":null}}}"#,
        2,
    );
    assert_eq!(
        body(&out, &format!("{LAMP}/update/accepted"))["metadata"],
        json!({"desired": {"timestamp": 2}, "reported": {"engine": {"timestamp": 2}}})
    );
    let out = sim.send(&format!("{LAMP}/get"), "", 3);
    let got = body(&out, &format!("{LAMP}/get/accepted"));
    assert_eq!(
        got["state"],
        json!({"reported": {"lights": {"color": "GREEN"}}})
    );
    assert_eq!(
        got["metadata"],
        json!({"reported": {"lights": {"color": {"timestamp": 1}}}})
    );
}

/// DSU20 "Updating a Shadow" and R-08: untouched leaves keep their timestamps; nested objects
/// merge.
#[test]
fn doc_updating_a_shadow_merges_and_keeps_metadata() {
    let mut sim = Sim::new();
    let update = format!("{LAMP}/update");
    sim.send(
        &update,
        r#"{"state":{"reported":{"lights":{"color":"RED","level":3},"engine":"ON"}}}"#,
        1,
    );
    sim.send(
        &update,
        r#"{"state":{"reported":{"lights":{"color":"GREEN"}}}}"#,
        2,
    );
    let out = sim.send(&format!("{LAMP}/get"), "", 3);
    let got = body(&out, &format!("{LAMP}/get/accepted"));
    assert_eq!(
        got["state"],
        json!({"reported": {"lights": {"color": "GREEN", "level": 3}, "engine": "ON"}})
    );
    assert_eq!(
        got["metadata"]["reported"],
        json!({"lights": {"color": {"timestamp": 2}, "level": {"timestamp": 1}},
               "engine": {"timestamp": 1}})
    );
}

/// R-11 / ECSDK229: a reported-only update that leaves a difference republishes the whole
/// delta; IDS23 "Message order": delta and accepted of one update share its version.
#[test]
fn doc_message_order_and_complete_delta() {
    let mut sim = Sim::new();
    let update = format!("{LAMP}/update");
    sim.send(&update, r#"{"state":{"desired":{"a":1,"b":2}}}"#, 1);
    let out = sim.send(&update, r#"{"state":{"reported":{"a":1}}}"#, 2);
    let accepted = body(&out, &format!("{LAMP}/update/accepted"));
    let delta = body(&out, &format!("{LAMP}/update/delta"));
    assert_eq!(delta["state"], json!({"b": 2}));
    assert_eq!(delta["metadata"], json!({"b": {"timestamp": 1}}));
    assert_eq!(accepted["version"], delta["version"]);
    assert_eq!(delta["version"], 2);
}

/// DSCD23: `My_IoT_Thing/namedShadow1` is created by its first update, independent of the
/// classic shadow (R-22), and listed (ListNamedShadowsForThing).
#[test]
fn doc_named_shadow_creation() {
    let mut sim = Sim::new();
    let named = "$aws/things/My_IoT_Thing/shadow/name/namedShadow1";
    let out = sim.send(&format!("{named}/get"), "", 1);
    assert_eq!(body(&out, &format!("{named}/get/rejected"))["code"], 404);
    let out = sim.send(
        &format!("{named}/update"),
        r#"{"state":{"reported":{"on":true}}}"#,
        2,
    );
    assert_eq!(
        body(&out, &format!("{named}/update/accepted"))["version"],
        1
    );
    let out = sim.send("$aws/things/My_IoT_Thing/shadow/get", "", 3);
    assert_eq!(
        body(&out, "$aws/things/My_IoT_Thing/shadow/get/rejected")["message"],
        "No shadow exists with name: 'My_IoT_Thing'"
    );
    assert_eq!(
        sim.shadows.list_named("My_IoT_Thing").unwrap(),
        ["namedShadow1"]
    );
    sim.send(&format!("{named}/delete"), "", 4);
    assert!(sim.shadows.list_named("My_IoT_Thing").unwrap().is_empty());
}

/// LIM20 depth example: `desired.one.two.three.four.five` is accepted; one level more is
/// rejected with the documented text (F-S1).
#[test]
fn doc_quota_depth_example() {
    let mut sim = Sim::new();
    let update = format!("{LAMP}/update");
    let out = sim.send(
        &update,
        r#"{"state":{"desired":{"one":{"two":{"three":{"four":{"five":1}}}}}}}"#,
        1,
    );
    assert!(topics(&out).contains(&format!("{LAMP}/update/accepted").as_str()));
    let out = sim.send(
        &update,
        r#"{"state":{"desired":{"one":{"two":{"three":{"four":{"five":{"six":1}}}}}}}}"#,
        2,
    );
    assert_eq!(
        without_timestamp(body(&out, &format!("{LAMP}/update/rejected"))),
        json!({"code": 400, "message": "JSON contains too many levels of nesting; maximum is 6"})
    );
    // Arrays count as levels too.
    let out = sim.send(
        &update,
        r#"{"state":{"reported":{"one":{"two":{"three":{"four":{"five":[1]}}}}}}}"#,
        3,
    );
    assert_eq!(body(&out, &format!("{LAMP}/update/rejected"))["code"], 400);
}

/// R-16 / MOTO9237: `state: null` empties the shadow, which stays; the version goes on.
#[test]
fn state_null_empties_the_shadow() {
    let mut sim = Sim::new();
    let update = format!("{LAMP}/update");
    sim.send(
        &update,
        r#"{"state":{"desired":{"a":1},"reported":{"b":2}}}"#,
        1,
    );
    let out = sim.send(&update, r#"{"state":null}"#, 1756452769);
    assert_eq!(
        body(&out, &format!("{LAMP}/update/accepted")),
        json!({"state":null,"metadata":{"timestamp":1756452769},"version":2,"timestamp":1756452769})
    );
    let out = sim.send(&format!("{LAMP}/get"), "", 1756452770);
    assert_eq!(
        body(&out, &format!("{LAMP}/get/accepted")),
        json!({"state": {}, "metadata": {}, "version": 2, "timestamp": 1756452770})
    );
    let out = sim.send(&update, r#"{"state":{}}"#, 1756452771);
    assert_eq!(body(&out, &format!("{LAMP}/update/accepted"))["version"], 3);
}

/// Numbers keep the client's text: 1 stays 1, 1.0 stays 1.0, and they differ in the delta.
#[test]
fn numbers_keep_their_text() {
    let mut sim = Sim::new();
    let update = format!("{LAMP}/update");
    let out = sim.send(
        &update,
        r#"{"state":{"desired":{"i":1,"f":1.0,"e":1e2,"big":123456789012345678901234567890},"reported":{"i":1,"f":1}}}"#,
        1,
    );
    let accepted = &out[0].payload;
    let text = std::str::from_utf8(accepted).unwrap();
    assert!(
        text.contains(r#""i":1,"f":1.0,"e":1e2,"big":123456789012345678901234567890"#),
        "{text}"
    );
    let delta = std::str::from_utf8(&out[2].payload).unwrap();
    assert!(
        delta.contains(r#""state":{"big":123456789012345678901234567890,"e":1e2,"f":1.0}"#),
        "{delta}"
    );
}
