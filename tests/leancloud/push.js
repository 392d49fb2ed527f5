'use strict';
/*
 * An app server sending pushes as LeanCloud's JS SDK does
 * (leancloud-storage: AV.Push.send posts to /1.1/push with the master
 * key), against pushgw. One scenario per run (argv[2]); prints the
 * answer as JSON ({"objectId","createdAt"} and, for `push_time`, the
 * time asked for in ms) for test_leancloud.c to follow.
 *
 * Environment: LC_APP_ID, LC_APP_KEY, LC_MASTER_KEY, LC_SERVER.
 */
const assert = require('assert');
const AV = require('leancloud-storage');

const env = process.env;
AV.init({
  appId: env.LC_APP_ID,
  appKey: env.LC_APP_KEY,
  masterKey: env.LC_MASTER_KEY,
  serverURL: env.LC_SERVER,
});

const master = {useMasterKey: true};

const scenarios = {
  /* every device on either channel */
  channels: () => AV.Push.send({
    channels: ['lc-news', 'lc-sport'],
    data: {alert: 'news for the channels', badge: 'Increment'},
  }, master),

  /* an AV.Query over installations: Android devices on lc-where-a or
   * lc-where-b, then iOS devices of one installationId or another */
  where: () => {
    const q = new AV.Query(AV.Installation);
    q.equalTo('deviceType', 'android');
    q.containedIn('channels', ['lc-where-a', 'lc-where-b']);
    return AV.Push.send({where: q, data: {alert: 'android on a or b'}},
                        master);
  },
  where_ids: () => {
    const q = new AV.Query(AV.Installation);
    q.equalTo('deviceType', 'ios');
    q.containedIn('installationId', ['lc-ios-w1', 'lc-ios-w3']);
    return AV.Push.send({where: q, data: {alert: 'ios w1 or w3'}}, master);
  },

  /* the APNs sandbox */
  prod_dev: () => AV.Push.send({
    channels: ['lc-dev'], prod: 'dev', data: {alert: 'to the sandbox'},
  }, master),

  /* a few seconds ahead: sent then, not before */
  push_time: async () => {
    const at = new Date(Date.now() + 4000);
    const r = await AV.Push.send({
      channels: ['lc-later'], push_time: at, data: {alert: 'a little later'},
    }, master);
    return Object.assign({push_time_ms: at.getTime()}, r);
  },

  /* valid one hour: the providers are told so */
  expiration: () => AV.Push.send({
    channels: ['lc-exp'], expiration_interval: 3600,
    data: {alert: 'for one hour'},
  }, master),

  /* a client (the app key) may not push unless the app allows it; a
   * where pushgw cannot serve is refused, never widened */
  refused: async () => {
    await assert.rejects(
      AV.Push.send({channels: ['lc-news'], data: {alert: 'from a phone'}}),
      (e) => e.code === 119);
    const q = new AV.Query(AV.Installation);
    q.greaterThan('badge', 3);
    await assert.rejects(
      AV.Push.send({where: q, data: {alert: 'badge over 3'}}, master),
      (e) => e.code === 107 && /badge|\$gt/.test(e.rawMessage || e.message));
    return {refused: true};
  },
};

async function main() {
  const run = scenarios[process.argv[2]];
  if (!run) throw new Error('unknown scenario ' + process.argv[2]);
  const r = await run();
  process.stdout.write(JSON.stringify(r) + '\n');
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  if (e && e.code) console.error('code', e.code, e.rawMessage || e.message);
  process.exit(1);
});
