// Differential-test driver for the npm `mqtt-packet` parser (run by tests/differential.rs).
// Input (stdin): lines "VERSION HEX" (VERSION 4 or 5). Output: one line per input line:
// "ok <canonical packet>" or "err <message>". Only the first packet of each input is reported.
'use strict';
const mp = require(process.argv[2]);
const hex = b => (b == null ? '' : Buffer.from(b).toString('hex'));
const b2 = v => (v ? '1' : '0');
const num = v => (v === undefined || v === null ? '-' : String(v));

function props(p) {
  const out = [];
  if (!p) return '';
  const put = (k, v) => out.push(k + '=' + v);
  if (p.messageExpiryInterval !== undefined) put('message_expiry_interval', p.messageExpiryInterval);
  if (p.contentType !== undefined) put('content_type', p.contentType);
  if (p.responseTopic !== undefined) put('response_topic', p.responseTopic);
  if (p.correlationData !== undefined) put('correlation_data', hex(p.correlationData));
  if (p.topicAlias !== undefined) put('topic_alias', p.topicAlias);
  if (p.sessionExpiryInterval !== undefined) put('session_expiry_interval', p.sessionExpiryInterval);
  if (p.receiveMaximum !== undefined) put('receive_maximum', p.receiveMaximum);
  if (p.maximumPacketSize !== undefined) put('maximum_packet_size', p.maximumPacketSize);
  if (p.topicAliasMaximum !== undefined) put('topic_alias_maximum', p.topicAliasMaximum);
  if (p.reasonString !== undefined) put('reason_string', p.reasonString);
  if (p.subscriptionIdentifier !== undefined) {
    const ids = Array.isArray(p.subscriptionIdentifier) ? p.subscriptionIdentifier : [p.subscriptionIdentifier];
    put('subscription_identifiers', ids.join(','));
  }
  if (p.userProperties !== undefined) {
    const pairs = [];
    for (const [k, v] of Object.entries(p.userProperties)) {
      for (const x of Array.isArray(v) ? v : [v]) pairs.push(k + ':' + x);
    }
    pairs.sort();
    put('user_properties', pairs.join(','));
  }
  return out.join(';');
}

function canon(p, version) {
  const t = p.cmd.toUpperCase();
  const f = ['type=' + t];
  const rc = v => num(v === undefined ? 0 : v);
  switch (p.cmd) {
    case 'connect':
      f.push('version=' + p.protocolVersion, 'clean=' + b2(p.clean), 'keep_alive=' + p.keepalive,
        'client_id=' + p.clientId, 'username=' + (p.username === undefined ? '-' : p.username),
        'password=' + (p.password === undefined ? '-' : hex(p.password)));
      if (p.will) {
        f.push('will=' + p.will.topic + ',' + hex(p.will.payload) + ',' + p.will.qos + ',' + b2(p.will.retain));
      } else f.push('will=-');
      break;
    case 'connack':
      f.push('session_present=' + b2(p.sessionPresent), 'code=' + (version === 5 ? rc(p.reasonCode) : num(p.returnCode)));
      break;
    case 'publish':
      f.push('topic=' + (p.topic || ''), 'payload=' + hex(p.payload), 'qos=' + p.qos, 'retain=' + b2(p.retain),
        'dup=' + b2(p.dup), 'pid=' + (p.qos > 0 ? num(p.messageId) : '-'));
      break;
    case 'puback': case 'pubrec': case 'pubrel': case 'pubcomp':
      f.push('pid=' + num(p.messageId), 'code=' + rc(p.reasonCode));
      break;
    case 'subscribe':
      f.push('pid=' + num(p.messageId), 'subs=' + p.subscriptions.map(s =>
        version === 5 ? [s.topic, s.qos, b2(s.nl), b2(s.rap), s.rh || 0].join(':') : s.topic + ':' + s.qos).join(','));
      break;
    case 'suback':
      f.push('pid=' + num(p.messageId), 'codes=' + p.granted.join(','));
      break;
    case 'unsubscribe':
      f.push('pid=' + num(p.messageId), 'filters=' + p.unsubscriptions.join(','));
      break;
    case 'unsuback':
      f.push('pid=' + num(p.messageId), 'codes=' + (version === 5 ? (p.granted || []).join(',') : ''));
      break;
    case 'disconnect': case 'auth':
      f.push('code=' + rc(p.reasonCode));
      break;
  }
  if (version === 5) f.push('props=' + props(p.properties));
  return f.join('|');
}

// Control characters and backslashes as \u{XX}, so every answer is one line (same in the test).
const escape = s => s.replace(/[\u0000-\u001f\\]/g, c => '\\u{' + c.charCodeAt(0).toString(16) + '}');

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
  out.push(escape(first !== null ? 'ok ' + canon(first, version) : 'err ' + error));
}
process.stdout.write(out.join('\n') + '\n');
