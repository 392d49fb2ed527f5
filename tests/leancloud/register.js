'use strict';
/*
 * Devices registered the way LeanCloud's SDKs do it, against pushgw's
 * /1.1/ API: the JS SDK (leancloud-storage: AV.Installation, X-LC-Sign)
 * and the native SDKs' requests (POST/PUT /1.1/installations). Asserts
 * the answers; prints {"ios":objectId,"android":…,"native":…} on success.
 *
 * Environment: LC_APP_ID, LC_APP_KEY, LC_MASTER_KEY, LC_SERVER (the
 * client listener's URL), IOS_TOKEN, FCM_TOKEN, NATIVE_TOKEN.
 */
const assert = require('assert');
const crypto = require('crypto');
const http = require('http');
const AV = require('leancloud-storage');

const env = process.env;
AV.init({
  appId: env.LC_APP_ID,
  appKey: env.LC_APP_KEY,
  masterKey: env.LC_MASTER_KEY,
  serverURL: env.LC_SERVER,
});

/* A raw request as the native SDKs make it. */
function raw(method, path, body, headers) {
  const url = new URL(env.LC_SERVER + path);
  const data = body === undefined ? undefined
    : typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: url.hostname, port: url.port, path: url.pathname + url.search,
      method, headers: Object.assign({'Content-Type': 'application/json'},
                                     headers),
    }, (res) => {
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
        resolve({status: res.statusCode, json, text});
      });
    });
    req.on('error', reject);
    if (data !== undefined) req.write(data);
    req.end();
  });
}

function sign(key, ts, master) {
  const md5 = crypto.createHash('md5').update(ts + key).digest('hex');
  return md5 + ',' + ts + (master ? ',master' : '');
}

function signed(master) {
  return {
    'X-LC-Id': env.LC_APP_ID,
    'X-LC-Sign': sign(master ? env.LC_MASTER_KEY : env.LC_APP_KEY,
                      Date.now(), master),
  };
}

function lcError(code, re) {
  return (e) => e.code === code && re.test(e.rawMessage || e.message);
}

async function main() {
  const out = {};

  /* The JS SDK: an iOS device subscribes, unsubscribes, resets its badge. */
  const ios = new AV.Installation();
  ios.set({
    deviceType: 'ios', deviceToken: env.IOS_TOKEN.toUpperCase(),
    channels: ['Tyke'], badge: 5, timeZone: 'Asia/Shanghai',
    appVersion: '2.1',
  });
  await ios.save();
  assert.match(ios.id, /^[0-9a-f]{24}$/);
  assert.ok(ios.createdAt instanceof Date);
  ios.addUnique('channels', ['Jerry', 'Spike']);
  await ios.save();
  ios.remove('channels', 'Tyke');
  await ios.save();
  ios.set('badge', 0);
  await ios.save();
  ios.increment('badge', 2);
  await ios.save();
  ios.increment('badge', -2);
  ios.remove('channels', 'Spike');
  await ios.save();
  const fetched = await AV.Object.createWithoutData('_Installation', ios.id)
    .fetch();
  assert.deepStrictEqual(fetched.get('channels'), ['Jerry']);
  assert.strictEqual(fetched.get('badge'), 0);
  assert.strictEqual(fetched.get('deviceToken'), env.IOS_TOKEN.toLowerCase());
  assert.strictEqual(fetched.get('timeZone'), 'Asia/Shanghai');
  assert.strictEqual(fetched.get('appVersion'), '2.1');
  out.ios = ios.id;

  /* The same token registered again (a reinstalled app): the same row. */
  const again = new AV.Installation();
  again.set({deviceType: 'ios', deviceToken: env.IOS_TOKEN,
             channels: ['Jerry']});
  await again.save();
  assert.strictEqual(again.id, ios.id);

  /* An Android device as LeanCloud's FCM module registers it. */
  const android = new AV.Installation();
  android.set({
    deviceType: 'android', installationId: 'a1b2c3d4-android',
    vendor: 'fcm', registrationId: env.FCM_TOKEN, channels: ['Jerry'],
  });
  await android.save();
  out.android = android.id;
  const a2 = await AV.Object.createWithoutData('_Installation', android.id)
    .fetch();
  assert.strictEqual(a2.get('registrationId'), env.FCM_TOKEN);
  assert.strictEqual(a2.get('vendor'), 'fcm');

  /* What pushgw cannot deliver to is refused, naming the field. */
  const wp = new AV.Installation();
  wp.set({deviceType: 'winphone', deviceToken: 'abc'});
  await assert.rejects(wp.save(), lcError(135, /deviceType/));
  const hms = new AV.Installation();
  hms.set({deviceType: 'android', vendor: 'HMS', registrationId: 'x'.repeat(20),
           installationId: 'hms-1'});
  await assert.rejects(hms.save(), lcError(135, /vendor 'HMS'/));
  const short = new AV.Installation();
  short.set({deviceType: 'ios', deviceToken: 'abc123'});
  await assert.rejects(short.save(), lcError(114, /deviceToken/));
  await assert.rejects(
    AV.request({method: 'PUT', path: '/installations/' + ios.id,
                data: {channels: {__op: 'Frobnicate', objects: ['x']}}}),
    lcError(107, /Frobnicate/));

  /* Deleting needs the master key. */
  const gone = new AV.Installation();
  gone.set({deviceType: 'android', installationId: 'gone-1',
            deviceToken: 'fcm-token-gone-1', channels: ['Jerry']});
  await gone.save();
  await assert.rejects(gone.destroy(), lcError(119, /master key/));
  await gone.destroy({useMasterKey: true});
  await assert.rejects(
    AV.Object.createWithoutData('_Installation', gone.id).fetch(),
    lcError(101, /not found/));

  /* The native SDKs: POST /1.1/installations, then PUT with __ops. */
  let r = await raw('POST', '/1.1/installations', {
    deviceType: 'ios', deviceToken: env.NATIVE_TOKEN, channels: [],
    badge: 3, apnsTopic: 'com.example.lc',
  }, signed(false));
  assert.strictEqual(r.status, 201, r.text);
  assert.match(r.json.objectId, /^[0-9a-f]{24}$/);
  assert.ok(r.json.createdAt);
  const nativeId = r.json.objectId;
  r = await raw('PUT', '/1.1/installations/' + nativeId,
                {channels: {__op: 'AddUnique', objects: ['Tyke']},
                 badge: {__op: 'Increment', amount: 2}},
                {'X-LC-Id': env.LC_APP_ID, 'X-LC-Key': env.LC_APP_KEY});
  assert.strictEqual(r.status, 200, r.text);
  assert.strictEqual(r.json.objectId, nativeId);
  assert.ok(r.json.updatedAt);
  r = await raw('GET', '/1.1/installations/' + nativeId, undefined,
                signed(true));
  assert.strictEqual(r.status, 200, r.text);
  assert.deepStrictEqual(r.json.channels, ['Tyke']);
  assert.strictEqual(r.json.badge, 5);
  /* the same token again: updated, 200 */
  r = await raw('POST', '/1.1/installations', {
    deviceType: 'ios', deviceToken: env.NATIVE_TOKEN.toUpperCase(),
  }, signed(false));
  assert.strictEqual(r.status, 200, r.text);
  assert.strictEqual(r.json.objectId, nativeId);
  out.native = nativeId;

  /* Authentication and bad input, in LeanCloud's error shape. */
  const unauthorized = {code: 401, error: 'Unauthorized.'};
  r = await raw('GET', '/1.1/installations/' + nativeId, undefined,
                {'X-LC-Id': env.LC_APP_ID, 'X-LC-Key': 'wrong'});
  assert.strictEqual(r.status, 401);
  assert.deepStrictEqual(r.json, unauthorized);
  r = await raw('GET', '/1.1/installations/' + nativeId, undefined, {
    'X-LC-Id': env.LC_APP_ID,
    'X-LC-Sign': sign(env.LC_MASTER_KEY, Date.now() - 3600 * 1000, true),
  });
  assert.strictEqual(r.status, 401, 'a stale master signature');
  assert.deepStrictEqual(r.json, unauthorized);
  r = await raw('GET', '/1.1/installations/' + nativeId, undefined,
                {'X-LC-Id': 'someone-else', 'X-LC-Key': env.LC_APP_KEY});
  assert.strictEqual(r.status, 401);
  r = await raw('POST', '/1.1/installations', '{"deviceType":', signed(false));
  assert.strictEqual(r.status, 400);
  assert.strictEqual(r.json.code, 107);
  r = await raw('POST', '/1.1/installations',
                {deviceType: 'ios', deviceToken: env.NATIVE_TOKEN,
                 channels: 'Tyke'}, signed(false));
  assert.strictEqual(r.status, 400);
  assert.strictEqual(r.json.code, 111);
  assert.match(r.json.error, /channels/);
  r = await raw('POST', '/1.1/installations',
                {deviceType: 'ios', deviceToken: env.NATIVE_TOKEN,
                 note: 'x'.repeat(70000)}, signed(false));
  assert.strictEqual(r.status, 413);
  assert.strictEqual(r.json.code, 116);
  r = await raw('GET', '/1.1/installations/000000000000000000000000',
                undefined, signed(false));
  assert.strictEqual(r.status, 404);
  assert.strictEqual(r.json.code, 101);
  /* nothing half-written: the refused bodies changed nothing */
  r = await raw('GET', '/1.1/installations/' + nativeId, undefined,
                signed(false));
  assert.deepStrictEqual(r.json.channels, ['Tyke']);

  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
