'use strict';
/*
 * A stock LeanEngine app, as LeanCloud's guide writes one: its
 * _receiversOffline hook turns the message into a pushMessage (a JSON
 * string). pushgw calls it as the app's server_hook_url; leanengine
 * itself checks X-LC-Id, X-LC-Sign / X-LC-Key and X-LC-Hook-Key.
 *
 * Environment: LEANCLOUD_APP_ID, LEANCLOUD_APP_KEY,
 * LEANCLOUD_APP_MASTER_KEY, LEANCLOUD_APP_HOOK_KEY, LEANCLOUD_APP_PORT;
 * HOOK_RECORD: a file that gets one JSON line per call.
 */
const fs = require('fs');
const AV = require('leanengine');

AV.init({
  appId: process.env.LEANCLOUD_APP_ID,
  appKey: process.env.LEANCLOUD_APP_KEY,
  masterKey: process.env.LEANCLOUD_APP_MASTER_KEY,
  hookKey: process.env.LEANCLOUD_APP_HOOK_KEY,
  // never reach LeanCloud: nothing here calls the storage API
  serverURL: 'http://127.0.0.1:9',
});

AV.Cloud.onIMReceiversOffline((request) => {
  const params = request.params;
  if (process.env.HOOK_RECORD) {
    fs.appendFileSync(process.env.HOOK_RECORD, JSON.stringify(params) + '\n');
  }
  return {
    pushMessage: JSON.stringify({
      alert: 'LeanEngine: ' + params.content,
      badge: 'Increment',
      sound: 'default',
    }),
  };
});

AV.Cloud.start();
