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
grant execute on function api.incidents_version() to emberlog_reader, emberlog_anon;
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

-- Signed-in users (emberlog_user: a token's sub; psql logins granted the role): their
-- alerts. It inherits emberlog_anon's reads (migrations/0010). The alert routes run as
-- the caller, so that row-level security (sql/90_security/alert_policies.sql) binds
-- them: unlike the other web roles, this one is granted the alert tables themselves,
-- column by column (never a channel's secret, nor a delivery's state: those change only
-- through internal functions that check the owner), and the internal functions those
-- routes call.
grant usage on schema data, internal to emberlog_user;
grant select (id, user_id, kind, name, url, verified_at, created_at, updated_at),
update (name, url),
delete
on data.alert_channels to emberlog_user;
grant select (
    id, user_id, name, enabled, throttle_sec, incident_types, units, channels, keywords,
    address, last_queued_at, created_at, updated_at
),
insert (user_id, name, enabled, throttle_sec, incident_types, units, channels, keywords, address),
update (name, enabled, throttle_sec, incident_types, units, channels, keywords, address, updated_at),
delete
on data.alert_rules to emberlog_user;
grant select, insert, delete on data.alert_rule_channels to emberlog_user;
grant select (
    id, kind, user_id, incident_id, rule_id, rule_name, channel_id, status, attempts,
    last_status_code, last_error, last_attempt_at, next_attempt_at, delivered_at,
    created_at, updated_at
)
on data.alert_deliveries to emberlog_user;
grant execute on function
internal.alert_user_id(),
internal.alert_user(),
internal.alert_subject_required(),
internal.alert_claims_trusted(),
internal.jwt_subject(),
internal.new_alert_channel(text, text),
internal.cancel_alert_deliveries(bigint, bigint, text),
internal.retry_alert_delivery(uuid),
internal.alert_url_pattern(),
internal.alerts_channel(),
internal.queue_test_alert(bigint),
internal.invalid_field(text, text),
internal.iso8601(timestamptz),
internal.payload_text(jsonb, text),
internal.payload_boolean(jsonb, text),
internal.text_list(jsonb, text),
internal.absolute_url(text),
internal.route_path(regprocedure)
to emberlog_user;
grant select on api.alert_channels, api.alert_rules, api.alert_deliveries to emberlog_user;
grant execute on function
api.alert_channel_json(api.alert_channels),
api.alert_rule_json(api.alert_rules),
api.alert_delivery_json(api.alert_deliveries),
api.alert_not_found(text, text),
api.alert_check_fields(jsonb, text[]),
api.alert_channel_values(jsonb, boolean),
api.alert_rule_channels(jsonb),
api.alert_rule_filters(jsonb),
api.alert_rule_settings(jsonb, boolean),
api.set_alert_rule_channels(bigint, bigint, bigint[]),
api.list_alert_channels(),
api.get_alert_channel(bigint),
api.create_alert_channel(jsonb),
api.update_alert_channel(bigint, jsonb),
api.delete_alert_channel(bigint),
api.test_alert_channel(bigint),
api.list_alert_rules(),
api.get_alert_rule(bigint),
api.create_alert_rule(jsonb),
api.update_alert_rule(bigint, jsonb),
api.delete_alert_rule(bigint),
api.list_alert_deliveries(text, bigint, bigint, integer, integer),
api.get_alert_delivery(uuid),
api.retry_alert_delivery(uuid)
to emberlog_user;

-- emberlog-api worker: claims and records deliveries, nothing else.
grant usage on schema api to emberlog_worker;
grant execute on function
api.claim_alert_deliveries(text, integer, double precision, integer, integer),
api.finish_alert_deliveries(jsonb, integer, double precision, double precision),
api.set_alert_notifier(text, text),
api.alert_queue()
to emberlog_worker;
