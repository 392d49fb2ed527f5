-- The demo devices of app 'demo': Jerry has an iPhone and an iPad, Tom an
-- Android phone. channels are the client ids whose messages reach the device.
INSERT INTO installations (app_id, installation_id, device_type, device_token, channels)
VALUES
  ('demo', 'jerry-iphone', 'ios',
   'a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1', '{Jerry}'),
  -- Jerry's iPad, token
  -- 'b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2',
  -- is not inserted here: the quickstart registers it through the LeanCloud
  -- SDK path (POST /1.1/installations with X-LC-Sign) once pushgw runs.
  ('demo', 'tom-android', 'android',
   'fcm-token-of-toms-android-phone:APA91bDemoDemoDemo', '{Tom}')
ON CONFLICT (app_id, device_token) DO NOTHING;
