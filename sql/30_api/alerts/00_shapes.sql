-- Alerts: a user's webhook channels, alert rules and deliveries (views for psql users,
-- functions for the routes). Every function here runs as its caller (security invoker),
-- so the row-level security of the data.alert_* tables
-- (sql/90_security/alert_policies.sql) decides which rows it sees and writes: another user's row is simply not there (404). Writes
-- that need rows no user may touch go through the few security definer functions of
-- internal (alert_user, queue_test_alert). Matching: sql/20_triggers/10_incidents.sql.

create view api.alert_channels with (security_invoker = true) as
select
    c.id,
    c.kind,
    c.name,
    c.url,
    c.verified_at,
    c.created_at,
    c.updated_at
from data.alert_channels as c;

comment on view api.alert_channels is
'The caller''s webhook channels (row-level security: a psql login sees its own). The signing secret is shown once, when the channel is created, and never here.';

create view api.alert_rules with (security_invoker = true) as
select
    r.id,
    r.name,
    r.enabled,
    r.throttle_sec,
    r.incident_types,
    r.units,
    r.channels,
    r.keywords,
    r.address,
    r.last_queued_at,
    r.created_at,
    r.updated_at,
    array(
        select rc.channel_id from data.alert_rule_channels as rc
        where rc.rule_id = r.id
        order by rc.channel_id
    ) as alert_channel_ids
from data.alert_rules as r;

comment on view api.alert_rules is
'The caller''s alert rules: filters (incident_types, units, channels, keywords, address) and the channels they notify (alert_channel_ids).';

create view api.alert_deliveries with (security_invoker = true) as
select
    d.id,
    d.kind,
    d.status,
    d.incident_id,
    d.rule_id,
    d.rule_name,
    d.channel_id,
    d.attempts,
    d.last_status_code,
    d.last_error,
    d.last_attempt_at,
    d.next_attempt_at,
    d.delivered_at,
    d.created_at,
    d.updated_at
from data.alert_deliveries as d;

comment on view api.alert_deliveries is
'The caller''s deliveries: status queued, sending, retrying, delivered, dead, throttled or cancelled; attempts, the last HTTP status and error, the next attempt. id is the webhook-id header the receiver sees on every attempt.';

create function api.alert_channel_json(channel api.alert_channels)
returns jsonb
language sql
stable
return jsonb_build_object(
    'id', channel.id,
    'kind', channel.kind,
    'name', channel.name,
    'url', channel.url,
    'verified', channel.verified_at is not null,
    'verified_at', internal.iso8601(channel.verified_at),
    'created_at', internal.iso8601(channel.created_at),
    'updated_at', internal.iso8601(channel.updated_at)
);

comment on function api.alert_channel_json(api.alert_channels) is
'The JSON shape of a channel in every response (the secret only in create''s).';

create function api.alert_rule_json(rule api.alert_rules)
returns jsonb
language sql
stable
return jsonb_build_object(
    'id', rule.id,
    'name', rule.name,
    'enabled', rule.enabled,
    'throttle_sec', rule.throttle_sec,
    'filters', jsonb_build_object(
        'incident_types', rule.incident_types,
        'units', rule.units,
        'channels', rule.channels,
        'keywords', rule.keywords,
        'address', rule.address
    ),
    'alert_channel_ids', to_jsonb(rule.alert_channel_ids),
    'last_queued_at', internal.iso8601(rule.last_queued_at),
    'created_at', internal.iso8601(rule.created_at),
    'updated_at', internal.iso8601(rule.updated_at)
);

comment on function api.alert_rule_json(api.alert_rules) is 'The JSON shape of a rule in every response.';

create function api.alert_delivery_json(delivery api.alert_deliveries)
returns jsonb
language sql
stable
return jsonb_build_object(
    'id', delivery.id,
    'kind', delivery.kind,
    'status', delivery.status,
    'incident_id', delivery.incident_id,
    'rule', case when delivery.rule_name is not null then jsonb_build_object(
        'id', delivery.rule_id, 'name', delivery.rule_name
    ) end,
    'channel_id', delivery.channel_id,
    'attempts', delivery.attempts,
    'last_status_code', delivery.last_status_code,
    'last_error', delivery.last_error,
    'last_attempt_at', internal.iso8601(delivery.last_attempt_at),
    'next_attempt_at', internal.iso8601(delivery.next_attempt_at),
    'delivered_at', internal.iso8601(delivery.delivered_at),
    'created_at', internal.iso8601(delivery.created_at)
);

comment on function api.alert_delivery_json(api.alert_deliveries) is
'The JSON shape of a delivery in every response (next_attempt_at only while one is due).';

create function api.alert_not_found(kind text, id text)
returns void
language plpgsql
immutable
as $$
begin
    raise sqlstate 'PT404' using message = kind || ' ' || id || ' not found', hint = 'not_found';
end
$$;

comment on function api.alert_not_found(text, text) is
'Raises the 404 of an alert resource that is not the caller''s (or does not exist: the same answer).';

create function api.alert_check_fields(payload jsonb, allowed text[])
returns void
language plpgsql
immutable
as $$
declare
    unknown text;
begin
    if payload is null or jsonb_typeof(payload) <> 'object' then
        raise sqlstate 'PT400' using message = 'the body must be a JSON object', hint = 'invalid_body';
    end if;
    select k into unknown from jsonb_object_keys(payload) as k where k <> all(allowed) limit 1;
    if unknown is not null then
        perform internal.invalid_field(unknown, 'is not a field here (allowed: ' || array_to_string(allowed, ', ') || ')');
    end if;
end
$$;

comment on function api.alert_check_fields(jsonb, text[]) is
'400 unless the body is a JSON object; 422 naming the first key that is not one of allowed.';
