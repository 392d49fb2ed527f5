'use strict';
// The peer figure of tests/bench/run.sh (docs/BENCHMARKS.md): @parse/node-apn
// sends N pushes, W batches of B in flight at once, over one HTTP/2
// connection to the same mock APNs, with the same key, topic and body size
// as pushgw and h2load. Prints one line:
//   node-apn pushes=… failed=… secs=… pushes_per_s=…
//
//   node peer.js PORT KEY_P8 CA_PEM N [B [W]]
const fs = require('fs');
const apn = require('@parse/node-apn');

const [port, keyFile, caFile, nArg, bArg, wArg] = process.argv.slice(2);
const total = parseInt(nArg, 10);
const batch = parseInt(bArg || '500', 10);
const workers = parseInt(wArg || '4', 10);
if (!port || !keyFile || !caFile || !(total > 0) || !(batch > 0) || !(workers > 0)) {
  console.error('usage: node peer.js PORT KEY_P8 CA_PEM N [BATCH [WORKERS]]');
  process.exit(2);
}

const provider = new apn.Provider({
  token: { key: keyFile, keyId: 'KEY0000001', teamId: 'TEAM000001' },
  address: '127.0.0.1',
  port: parseInt(port, 10),
  ca: [fs.readFileSync(caFile)],
  production: true,
  requestTimeout: 60000,
});
const token = '0'.repeat(63) + '1';

function note() {
  const n = new apn.Notification();
  n.alert = 'hello from the benchmark';
  n.badge = 1;
  n.topic = 'com.example.demo';
  n.payload = { seq: '1' };
  return n;
}

async function main() {
  let next = 0;
  let sent = 0;
  let failed = 0;
  await provider.send(note(), [token]); // connection and JWT first
  const t0 = process.hrtime.bigint();
  async function worker() {
    while (next < total) {
      const k = Math.min(batch, total - next);
      next += k;
      const r = await provider.send(note(), new Array(k).fill(token));
      sent += r.sent.length;
      failed += r.failed.length;
    }
  }
  await Promise.all(Array.from({ length: workers }, worker));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`node-apn pushes=${sent} failed=${failed} secs=${secs.toFixed(3)} ` +
              `pushes_per_s=${Math.round(sent / secs)}`);
  provider.shutdown();
}

main().catch((e) => {
  console.error(`node-apn: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
