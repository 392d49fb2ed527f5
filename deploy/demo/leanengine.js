'use strict';
/*
 * The quickstart's server hook as a LeanEngine app (npm leanengine): the
 * hook code a LeanCloud user already has, unchanged. pushgw calls it with
 * X-LC-Id, X-LC-Sign (the master key) and X-LC-Hook-Key, which leanengine
 * checks. Same answers as deploy/demo/hook-answers.json: a pushMessage for
 * conversation 'conv-hooked', nothing for the others.
 *
 * usage: node leanengine.js RECORD_FILE   (LEANCLOUD_APP_* in the environment)
 */
const fs = require('fs');
const AV = require('leanengine');

const record = process.argv[2];

AV.init({
  appId: process.env.LEANCLOUD_APP_ID,
  appKey: process.env.LEANCLOUD_APP_KEY,
  masterKey: process.env.LEANCLOUD_APP_MASTER_KEY,
  hookKey: process.env.LEANCLOUD_APP_HOOK_KEY,
  serverURL: 'http://127.0.0.1:9', // never called: no storage API is used
});

AV.Cloud.onIMReceiversOffline((request) => {
  const params = request.params;
  if (record) fs.appendFileSync(record, JSON.stringify({body: params}) + '\n');
  if (params.convId !== 'conv-hooked') return {};
  return {
    pushMessage: JSON.stringify({
      title: 'Server hook',
      alert: '${fromClientId} in ${convId}: ${text}',
      badge: 'Increment',
    }),
  };
});

AV.Cloud.start();
