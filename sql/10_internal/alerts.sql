-- Alerts: who the caller is, what a rule is checked for, the worker's backoff, and the
-- NOTIFY channel the worker listens on. Matching itself is the incident trigger
-- internal.tg_incidents__queue_alerts (sql/20_triggers/10_incidents.sql); the routes are
-- sql/30_api/alerts/ (the worker's functions in 40_worker.sql).

create or replace function internal.alerts_channel()
returns text
language sql
immutable
parallel safe
return 'emberlog_alerts';

comment on function internal.alerts_channel() is
'The NOTIFY channel emberlog-api worker listens on: rung when a delivery becomes due (queued by matching, a test, a retry).';

create or replace function internal.alert_claims_trusted()
returns boolean
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    -- request.jwt.claims is a setting any session may set: it names the caller only in
    -- the API's own sessions, logged in as the authenticator (or a login granted it).
    select pg_catalog.pg_has_role(session_user, 'emberlog_authenticator', 'member')
$$;

comment on function internal.alert_claims_trusted() is
'True when the session is the API''s (session_user is emberlog_authenticator, or a member of it): only then does the token''s sub in request.jwt.claims say who the caller is. Elsewhere (psql) the caller is the login, session_user, which SET ROLE cannot change.';

create or replace function internal.jwt_subject()
returns text
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    select nullif(
        nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub', ''
    )
$$;

comment on function internal.jwt_subject() is
'The request''s token sub (request.jwt.claims), or null.';

create or replace function internal.alert_user_id()
returns bigint
language sql
stable
-- Reads data.alert_users, which no caller may read; the policies call it.
security definer
set search_path = pg_catalog, pg_temp
as $$
    select u.id
    from data.alert_users as u
    where internal.alert_claims_trusted() and u.subject = internal.jwt_subject()
    union all
    select u.id
    from data.alert_users as u
    where not internal.alert_claims_trusted() and u.db_login = session_user::text
$$;

comment on function internal.alert_user_id() is
'The calling user''s id in data.alert_users, or null when they have none yet: in the API''s sessions the user whose subject is the token''s sub, in any other session the user whose db_login is the login (session_user). Every alert table''s row-level security policy compares with it.';

create or replace function internal.alert_subject_required()
returns void
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
begin
    if internal.alert_claims_trusted() and internal.jwt_subject() is null then
        raise sqlstate 'PT403' using
            message = 'alerts belong to a user: send a token with a sub claim',
            hint = 'subject_required';
    end if;
end
$$;

comment on function internal.alert_subject_required() is
'403 subject_required when an API request has no token sub (alerts belong to a user); nothing in psql, where the login is the user.';

create or replace function internal.alert_user()
returns bigint
language plpgsql
volatile
-- Creates the caller's row in data.alert_users, which no caller may write.
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    found_id bigint := internal.alert_user_id();
begin
    if found_id is not null then
        return found_id;
    end if;
    perform internal.alert_subject_required();
    if internal.alert_claims_trusted() then
        if length(internal.jwt_subject()) > 500 then
            raise sqlstate 'PT403' using
                message = 'the token''s sub is longer than 500 characters', hint = 'subject_too_long';
        end if;
        insert into data.alert_users (subject) values (internal.jwt_subject())
        on conflict do nothing;
    else
        insert into data.alert_users (db_login) values (session_user::text) on conflict do nothing;
    end if;
    return internal.alert_user_id();
end
$$;

comment on function internal.alert_user() is
'The calling user''s id, their row created on first use (from the token''s sub, or the psql login). 403 subject_required for a token without a sub.';

create or replace function internal.alert_secret()
returns text
language sql
volatile
set search_path = pg_catalog, pg_temp
as $$
    -- 32 bytes from two v4 UUIDs (pg_strong_random; 244 random bits), Standard Webhooks' form.
    select 'whsec_' || pg_catalog.encode(
        pg_catalog.decode(pg_catalog.replace(
            gen_random_uuid()::text || gen_random_uuid()::text, '-', ''
        ), 'hex'),
        'base64'
    )
$$;

comment on function internal.alert_secret() is
'A new webhook signing secret: whsec_ and 32 random bytes in base64 (Standard Webhooks).';

create or replace function internal.alert_backoff(
    attempts integer, base_seconds double precision, max_seconds double precision
)
returns interval
language sql
volatile
set search_path = pg_catalog, pg_temp
as $$
    -- Exponential, capped, with "equal jitter": half the delay fixed, half random, so
    -- deliveries that failed together (a receiver down) do not all come back together.
    select pg_catalog.make_interval(secs => d / 2 + pg_catalog.random() * d / 2)
    from (
        select least(max_seconds, base_seconds * 2 ^ greatest(attempts - 1, 0)) as d
    ) as delay
$$;

comment on function internal.alert_backoff(integer, double precision, double precision) is
'How long to wait before the next attempt after attempts failed ones: base x 2^(attempts-1), at most max, jittered between half and all of it.';

create or replace function internal.text_list(value jsonb, field text)
returns text[]
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
    if value is null or value = 'null'::jsonb then
        return '{}';
    end if;
    if jsonb_typeof(value) <> 'array' or jsonb_array_length(value) > 50 or exists (
        select from jsonb_array_elements(value) as v
        where jsonb_typeof(v) <> 'string' or length(v #>> '{}') not between 1 and 100
    ) then
        perform internal.invalid_field(field, 'must be an array of at most 50 strings of 1 to 100 characters');
    end if;
    return array(select v from jsonb_array_elements_text(value) as v);
end
$$;

comment on function internal.text_list(jsonb, text) is
'A filter''s list of strings from a JSON body (null or absent: empty); 422 naming the field otherwise.';

create or replace function internal.lowered(value text[])
returns text[]
language sql
immutable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
    select coalesce(array_agg(distinct lower(v)), '{}') from unnest(value) as v
$$;

comment on function internal.lowered(text[]) is
'The distinct values of an array, lowercased: what matching compares.';

create or replace function internal.queue_test_alert(channel_id bigint)
returns uuid
language plpgsql
volatile
-- Writes data.alert_messages, which no user may touch; only for the caller's own channel.
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    owner_id bigint;
    message_id bigint;
    delivery_id uuid;
begin
    select c.user_id into owner_id from data.alert_channels as c
    where c.id = queue_test_alert.channel_id and c.user_id = internal.alert_user_id();
    if owner_id is null then
        raise sqlstate 'PT404' using
            message = 'alert channel ' || channel_id || ' not found', hint = 'not_found';
    end if;
    -- One test at a time per channel: asking again while one is pending returns it.
    select d.id into delivery_id from data.alert_deliveries as d
    where d.channel_id = queue_test_alert.channel_id and d.kind = 'test'
        and d.status in ('queued', 'sending', 'retrying');
    if delivery_id is not null then
        return delivery_id;
    end if;
    -- An envelope's columns, as data.event_envelopes holds one (not stored there: a test
    -- is no event of the log).
    insert into data.alert_messages (envelope) values (jsonb_build_object(
        'event_id', gen_random_uuid(),
        'event_type', 'alert.channel.test',
        'schema_version', '1.0.0',
        'occurred_at', now(),
        'received_at', now(),
        'source_module', 'emberlog-api',
        'source_instance', internal.source_instance(),
        'payload', jsonb_build_object(
            'channel_id', channel_id,
            'message', 'A test delivery from Emberlog: if it arrived and its signature'
            || ' verifies, this channel works.'
        )
    ))
    returning id into message_id;
    insert into data.alert_deliveries (kind, user_id, message_id, channel_id, status, next_attempt_at)
    values ('test', owner_id, message_id, channel_id, 'queued', now())
    returning id into delivery_id;
    perform pg_catalog.pg_notify(internal.alerts_channel(), '');
    return delivery_id;
end
$$;

comment on function internal.queue_test_alert(bigint) is
'Queues a test delivery (event alert.channel.test) to one of the caller''s channels and returns its id; while one is pending for the channel, returns that one instead. 404 for a channel that is not the caller''s.';

create or replace function internal.prune_alerts(retention interval default null)
returns bigint
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    keep interval := coalesce(
        prune_alerts.retention, internal.interval_setting('emberlog.alert_retention', '30 days')
    );
    deleted bigint;
begin
    -- Only finished deliveries: one still queued, in flight or retrying stays, however old.
    delete from data.alert_deliveries as d
    where d.status in ('delivered', 'dead', 'throttled', 'cancelled')
        and d.updated_at < clock_timestamp() - keep;
    get diagnostics deleted = row_count;
    delete from data.alert_messages as m
    where m.created_at < clock_timestamp() - keep
        and not exists (select from data.alert_deliveries as d where d.message_id = m.id);
    return deleted;
end
$$;

comment on function internal.prune_alerts(interval) is
'Delete finished alert deliveries (delivered, dead, throttled, cancelled) last changed longer ago than retention (default: the emberlog.alert_retention setting, else 30 days) and the messages no delivery uses any more; returns how many deliveries. internal.prune_events calls it (emberlog-api prune-events).';

create or replace function internal.new_alert_channel(name text, url text)
returns table (id bigint, secret text)
language plpgsql
volatile
-- Writes the secret, which no user may write (nor read: it is returned this once).
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    secret := internal.alert_secret();
    insert into data.alert_channels as c (user_id, name, url, secret)
    values (internal.alert_user(), new_alert_channel.name, new_alert_channel.url, secret)
    returning c.id into id;
    return next;
end
$$;

comment on function internal.new_alert_channel(text, text) is
'A new webhook channel of the caller''s, its signing secret generated here (internal.alert_secret): the id and the secret, which is never readable again.';

create or replace function internal.cancel_alert_deliveries(
    rule_id bigint, channel_id bigint, reason text
)
returns integer
language plpgsql
volatile
-- Changes delivery states, which no user may write directly; the caller's rows only.
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    cancelled integer;
begin
    update data.alert_deliveries as d
    set status = 'cancelled', next_attempt_at = null, last_error = reason, updated_at = now()
    where (d.rule_id = cancel_alert_deliveries.rule_id
        or d.channel_id = cancel_alert_deliveries.channel_id)
        and d.user_id = internal.alert_user_id()
        and d.status in ('queued', 'retrying');
    get diagnostics cancelled = row_count;
    return cancelled;
end
$$;

comment on function internal.cancel_alert_deliveries(bigint, bigint, text) is
'Cancels the caller''s deliveries not yet sent of a rule or a channel (being deleted), giving the reason as their last_error; how many.';

create or replace function internal.retry_alert_delivery(id uuid)
returns void
language plpgsql
volatile
-- Changes a delivery's state, which no user may write directly; the caller's rows only.
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    current_status text;
begin
    select d.status into current_status from data.alert_deliveries as d
    where d.id = retry_alert_delivery.id and d.user_id = internal.alert_user_id()
    for update;
    if current_status is null then
        raise sqlstate 'PT404' using
            message = 'alert delivery ' || id || ' not found', hint = 'not_found';
    elsif current_status <> 'dead' then
        raise sqlstate 'PT409' using
            message = 'only a dead delivery can be retried (this one is ' || current_status || ')',
            hint = 'not_dead';
    end if;
    update data.alert_deliveries as d
    set status = 'queued', attempts = 0, next_attempt_at = now(), updated_at = now()
    where d.id = retry_alert_delivery.id;
    perform pg_catalog.pg_notify(internal.alerts_channel(), '');
end
$$;

comment on function internal.retry_alert_delivery(uuid) is
'Queues one of the caller''s dead deliveries again (attempts start over): 404 when it is not theirs, 409 not_dead for any other status.';

create or replace function internal.alert_limits()
returns table (channels integer, rules integer, rule_channels integer)
language sql
immutable
parallel safe
as $$
    select 20, 100, 100
$$;

comment on function internal.alert_limits() is
'What one user may have: channels, rules, and (rule, channel) pairs (each is one delivery per matching incident, so this bounds what one user adds to every incident''s write and to the worker''s queue). Enforced by triggers on the tables, whoever writes.';

create or replace function internal.alert_url_pattern()
returns text
language sql
immutable
parallel safe
return '^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[!-~]*)?$';

comment on function internal.alert_url_pattern() is
'What a webhook URL may be: http(s), a host name or IPv4 address, an optional port, a path of printable ASCII (no credentials, no spaces); the routes'' JSON Schema says the same.';
