-- Who may do what. Re-applied on every deploy, since api is re-created.
-- Web roles get usage on api and grants on single objects; nothing on data or internal.

revoke all on schema api from public;
revoke execute on all functions in schema api from public;
revoke execute on all functions in schema internal from public;
-- Functions a DBA adds later are not everyone's either: a new route is reachable only
-- by the roles it is granted to. (Global for the migrating role in this database: a
-- per-schema default cannot take back PostgreSQL's execute-to-public.)
alter default privileges revoke execute on functions from public;

grant usage on schema api to emberlog_anon, emberlog_ingest, emberlog_reader;

-- psql users: read the views and the incident stream, nothing else.
grant select on api.incidents, api.recent_incidents, api.incident_count to emberlog_reader;
grant select on api.events to emberlog_reader;
grant execute on function
api.iso8601(timestamptz),
api.event_json(api.events),
api.list_events(text, text[], text, timestamptz, timestamptz, integer, integer)
to emberlog_reader;
grant execute on function api.incident_events(bigint, integer) to emberlog_reader;
grant execute on function
api.event_stream(bigint, integer, text, text[], text, text),
api.event_position(uuid)
to emberlog_reader;
-- the traffic monitor's views and reads.
grant select on
api.traffic_sites, api.traffic_recorders, api.traffic_feeds, api.traffic_live_calls,
api.traffic_decode_history, api.traffic_call_events
to emberlog_reader, emberlog_anon;
grant execute on function
api.get_traffic_summary(text),
api.list_live_calls(text, text[], text, boolean),
api.get_decode_history(text, text)
to emberlog_reader, emberlog_anon;

-- Anonymous web requests: the read routes.
grant select on api.incidents, api.recent_incidents, api.incident_count to emberlog_anon;
grant select on api.events to emberlog_anon;
grant execute on function
api.iso8601(timestamptz),
api.audio_url(text),
api.incident_json(api.incidents),
api.get_incident(bigint),
api.incident_events(bigint, integer),
api.list_incidents(timestamptz, timestamptz, text, text, text[], text, text, integer, integer),
api.event_json(api.events),
api.list_events(text, text[], text, timestamptz, timestamptz, integer, integer),
api.event_stream(bigint, integer, text, text[], text, text),
api.event_position(uuid)
to emberlog_anon;

-- The ingest service: the write function only.
grant execute on function api.create_incident(jsonb) to emberlog_ingest;
-- and the event ingest route (API_CONTRACT §5).
grant execute on function api.ingest_events(jsonb) to emberlog_ingest;
-- and Trunk Recorder's status (the route, and emberlog-api mqtt-bridge).
grant execute on function api.ingest_trunk_recorder(jsonb) to emberlog_ingest;

-- The authenticator itself: look up a key's role, record use. Nothing else in auth.
revoke execute on all functions in schema auth from public;
grant usage on schema auth to emberlog_authenticator;
grant execute on function auth.key_role(bytea), auth.touch_api_keys(bigint[], timestamptz[])
to emberlog_authenticator;
