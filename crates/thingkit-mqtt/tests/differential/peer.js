// Differential-test driver for the npm `mqtt-packet` parser (run by tests/differential.rs).
// Input (stdin): lines "VERSION HEX" (VERSION 4 or 5). Output: one JSON line per input line,
// {"ok": PACKET} or {"err": MESSAGE}, where PACKET is the first packet mqtt-packet decoded, written
// in thingkit-mqtt's serde shape (`{"type":"PUBLISH","topic":...,"payload_hex":...}`, documented in
// crates/thingkit-mqtt/src/lib.rs) so that the test reads it with serde into a `Packet`.
// This script only renames: mqtt-packet's camelCase fields to the shape's snake_case, Buffers to
// hex, its folded user-property object to [[name, value], ...]. It decides nothing.
'use strict';
const mp = require(process.argv[2]);
const hex = b => (b == null ? '' : Buffer.from(b).toString('hex'));

// mqtt-packet property name -> [our name, conversion].
const PROPS = {
  correlationData: ['correlation_data_hex', hex],
  authenticationData: ['authentication_data_hex', hex],
  maximumQoS: ['maximum_qos', v => v],
  // One identifier (SUBSCRIBE, or a PUBLISH with one) or an array of them.
  subscriptionIdentifier: ['subscription_identifiers', v => (Array.isArray(v) ? v : [v])],
  // {name: value | [value, ...]}: mqtt-packet folds repeated names and loses their order, so the
  // test compares user properties as a multiset.
  userProperties: ['user_properties', v => {
    const pairs = [];
    for (const [k, x] of Object.entries(v)) {
      for (const y of Array.isArray(x) ? x : [x]) pairs.push([k, y]);
    }
    return pairs;
  }],
};
const snake = k => k.replace(/[A-Z]/g, c => '_' + c.toLowerCase());

// Every property mqtt-packet reports, renamed; one we do not know stays in under its snake_case
// name, and the test's deserializer refuses it as an unknown field.
function props(out, p) {
  if (!p || Object.keys(p).length === 0) return;
  const o = {};
  for (const [k, v] of Object.entries(p)) {
    const [name, conv] = PROPS[k] || [snake(k), x => x];
    o[name] = conv(v);
  }
  out.properties = o;
}

function shape(p, version) {
  const out = { type: p.cmd.toUpperCase() };
  const code = v => (v === undefined ? 0 : v);
  switch (p.cmd) {
    case 'connect':
      out.protocol = p.protocolVersion === 5 ? '5.0' : p.protocolVersion === 4 ? '3.1.1' : String(p.protocolVersion);
      out.clean_start = p.clean;
      out.keep_alive = p.keepalive;
      out.client_id = p.clientId;
      if (p.will) {
        out.will = { topic: p.will.topic, payload_hex: hex(p.will.payload), qos: p.will.qos, retain: p.will.retain };
        props(out.will, p.will.properties);
      }
      if (p.username !== undefined) out.username = p.username;
      if (p.password !== undefined) out.password_hex = hex(p.password);
      break;
    case 'connack':
      out.session_present = p.sessionPresent;
      out.reason_code = version === 5 ? code(p.reasonCode) : p.returnCode;
      break;
    case 'publish':
      out.dup = p.dup;
      out.qos = p.qos;
      out.retain = p.retain;
      if (p.topic) out.topic = p.topic; // empty: the Topic Alias stands in for it
      if (p.qos > 0) out.packet_id = p.messageId;
      out.payload_hex = hex(p.payload);
      break;
    case 'puback': case 'pubrec': case 'pubrel': case 'pubcomp':
      out.packet_id = p.messageId;
      out.reason_code = code(p.reasonCode);
      break;
    case 'subscribe':
      out.packet_id = p.messageId;
      out.subscriptions = p.subscriptions.map(s => ({
        filter: s.topic, qos: s.qos, no_local: !!s.nl, retain_as_published: !!s.rap, retain_handling: s.rh || 0,
      }));
      break;
    case 'suback':
      out.packet_id = p.messageId;
      out.reason_codes = p.granted;
      break;
    case 'unsubscribe':
      out.packet_id = p.messageId;
      out.filters = p.unsubscriptions;
      break;
    case 'unsuback':
      out.packet_id = p.messageId;
      out.reason_codes = version === 5 ? p.granted || [] : [];
      break;
    case 'disconnect': case 'auth':
      out.reason_code = code(p.reasonCode);
      break;
  }
  if (version === 5) props(out, p.properties);
  return out;
}

const lines = require('fs').readFileSync(0, 'utf8').split('\n').filter(l => l.length > 0);
const out = [];
for (const line of lines) {
  const [v, h] = line.split(' ');
  const version = Number(v);
  const parser = mp.parser({ protocolVersion: version });
  let first = null, error = null;
  parser.on('packet', p => { if (first === null) first = p; });
  parser.on('error', e => { if (error === null) error = e.message; });
  try {
    parser.parse(Buffer.from(h || '', 'hex'));
    if (error === null) error = 'incomplete';
  } catch (e) {
    error = 'exception ' + e.message;
  }
  // The decision on the first packet: an error in a later packet does not count.
  out.push(JSON.stringify(first !== null ? { ok: shape(first, version) } : { err: error }));
}
process.stdout.write(out.join('\n') + '\n');
