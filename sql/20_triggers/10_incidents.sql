-- The triggers on data.incidents and their functions (internal.tg_incidents__<task>).
-- Edit here and run `make migrate`: the deploy replaces functions and triggers in one
-- transaction (create or replace: a trigger is never missing, not even for a moment,
-- so every incident written during a deploy is counted and queued).
--
-- Order: triggers of the same timing, level and event fire in name order (PostgreSQL's
-- rule), so _100_* (bookkeeping) run before _500_* (derived work) and _900_*
-- (announcing: the last word); at the end of a statement its AFTER ... FOR EACH ROW
-- triggers fire before its AFTER ... FOR EACH STATEMENT ones. Ours are all AFTER ... FOR
-- EACH STATEMENT, with a transition table where they need the rows: one call per
-- statement whatever its row count, inside the writing transaction (a rolled back
-- insert leaves neither a count nor an event). A trigger with a transition table may
-- have one event only (PostgreSQL's rule): hence three counting triggers, one function.
--
-- A trigger function is internal.tg_<table>__<task>, volatile, security definer (it
-- fires as whatever role writes) with its search_path pinned. To rename one: point
-- the triggers at the new name, then drop the old name below them, as here.

create or replace function internal.tg_incidents__count()
returns trigger
language plpgsql
volatile
-- Fires as whatever role writes: definer rights reach data.incident_counts.
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    delta bigint;
    changed bigint;
begin
    if tg_op = 'TRUNCATE' then
        update data.incident_counts
        set incidents = 0, writes = writes + case when shard = 0 then 1 else 0 end;
        return null;
    elsif tg_op = 'INSERT' then
        select count(*) into changed from new_rows;
        delta := changed;
    elsif tg_op = 'UPDATE' then
        select count(*) into changed from new_rows;
        delta := 0;
    else
        select count(*) into changed from old_rows;
        delta := -changed;
    end if;
    if changed > 0 then
        -- This backend's shard: concurrent writers do not queue on one counter row.
        update data.incident_counts
        set incidents = incidents + delta, writes = writes + 1
        where shard = pg_catalog.pg_backend_pid() % 16;
    end if;
    return null;
end
$$;

comment on function internal.tg_incidents__count() is
'Statement trigger on data.incidents: add the rows a statement inserted (new_rows) or subtract those it deleted (old_rows) on this backend''s shard of data.incident_counts, and count the statement in its writes (the incidents'' version) when it changed any row (an update too); a truncate zeroes every shard. internal.recount_incidents() rebuilds the count.';

create or replace function internal.tg_incidents__queue_event()
returns trigger
language plpgsql
volatile
-- Fires as whatever role writes: definer rights reach data.event_queue.
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    stream_name constant text := 'incidents';  -- the stream api.incident_events reads
begin
    insert into data.event_queue (stream, ref_id)
    select stream_name, n.id from new_rows as n order by n.id;
    if found then
        -- Delivered at commit; carries only the stream: listeners fetch what is new.
        perform pg_catalog.pg_notify(internal.events_channel(), stream_name);
    end if;
    return null;
end
$$;

comment on function internal.tg_incidents__queue_event() is
'Statement trigger on data.incidents: queue one event of the incidents stream per inserted row (ref_id = its id) and NOTIFY internal.events_channel() with the stream name. No lock: internal.publish_events numbers the events.';

create or replace function internal.tg_incidents__record_event()
returns trigger
language plpgsql
volatile
-- Fires as whatever role writes: definer rights reach data.event_envelopes.
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    -- One dispatch.incident.created envelope per inserted row (a duplicate incident,
    -- which api.create_incident does not insert, is no row here: no second event).
    -- timestamp: when the dispatch was heard; received_at: when the incident was stored.
    insert into data.event_envelopes (
        event_id, event_type, schema_version, occurred_at, received_at,
        source_module, source_instance, source_system, payload
    )
    select
        gen_random_uuid(),
        'dispatch.incident.created',
        '1.0.0',
        n.dispatched_at,
        n.created_at,
        'emberlog-api',
        internal.source_instance(),
        internal.channel_system(n.channel),
        internal.incident_payload(
            n.id, n.dispatched_at, n.special_call, n.units, n.channel, n.incident_type,
            n.address, n.source_audio, n.original_text, n.transcript, n.parsed
        )
    from new_rows as n
    order by n.id;
    return null;
end
$$;

comment on function internal.tg_incidents__record_event() is
'Statement trigger on data.incidents: record one dispatch.incident.created envelope (schema 1.0.0, EVENT_MODEL §4.3) per inserted row in data.event_envelopes, in the writing transaction: event_id a random UUID (v4), timestamp the incident''s dispatched_at, received_at its created_at, source {module emberlog-api, instance internal.source_instance(), system internal.channel_system(channel)}, payload internal.incident_payload(...).';

create or replace function internal.tg_incidents__queue_alerts()
returns trigger
language plpgsql
volatile
-- Fires as whatever role writes: definer rights read every user's rules (row-level
-- security does not bind the owner) and queue their deliveries.
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    matched_incidents bigint[];
    matched_rules bigint[];
    fired bigint[];
    queued integer;
    -- Whether every incident goes to a system destination too: read once.
    systems boolean := exists (select from data.alert_system_destinations);
begin
    if not systems and not exists (select from data.alert_rules as r where r.enabled) then
        return null;  -- the common case, two index probes
    end if;

    -- Every (incident, enabled rule) whose filters all match. Each incident's words and
    -- lowercased fields are computed once (offset 0 keeps the subquery from being
    -- merged into the join, which would compute them once per rule).
    select coalesce(array_agg(i.id order by r.id, i.id), '{}'),
        coalesce(array_agg(r.id order by r.id, i.id), '{}')
    into matched_incidents, matched_rules
    from (
        select
            n.id,
            lower(n.incident_type) as incident_type,
            internal.lowered(n.units) as units,
            lower(n.channel) as channel,
            lower(n.address) as address,
            to_tsvector('english', coalesce(n.transcript, '')) as words
        from new_rows as n
        offset 0
    ) as i
    inner join data.alert_rules as r
        on
            r.enabled
            and (cardinality(r.match_incident_types) = 0 or i.incident_type = any(r.match_incident_types))
            and (cardinality(r.match_units) = 0 or i.units && r.match_units)
            and (cardinality(r.match_channels) = 0 or i.channel = any(r.match_channels))
            and (r.keywords_query is null or i.words @@ r.keywords_query)
            and (r.match_address is null or strpos(i.address, r.match_address) > 0);

    if cardinality(matched_rules) = 0 and not systems then
        return null;
    end if;

    -- What the deliveries send: each incident's envelope (its row, as data.event_envelopes
    -- holds it; the worker's claim renders it as api.event_json does), stored once.
    insert into data.alert_messages (incident_id, envelope)
    select n.id, to_jsonb(e)
    from new_rows as n
    inner join data.event_envelopes as e
        on
            e.received_at = n.created_at
            and e.event_type = 'dispatch.incident.created'
            and e.payload ->> 'incident_id' = n.id::text
    where systems or n.id = any(matched_incidents)
    on conflict (incident_id) do nothing;

    -- Throttled rules: the first match fires when the rule's window has passed (the row
    -- lock orders concurrent incidents: the second sees the first's last_queued_at).
    perform from data.alert_rules as r
    where r.id = any(matched_rules) and r.throttle_sec > 0
    order by r.id
    for update;  -- in one order, so that two writers matching the same rules cannot deadlock
    with updated as (
        update data.alert_rules as r
        set last_queued_at = now()
        where r.id = any(matched_rules) and r.throttle_sec > 0
            and (r.last_queued_at is null
                or r.last_queued_at <= now() - make_interval(secs => r.throttle_sec))
        returning r.id
    )
    select coalesce(array_agg(u.id), '{}') into fired from updated as u;

    insert into data.alert_deliveries (
        kind, user_id, message_id, incident_id, rule_id, rule_name, channel_id,
        status, next_attempt_at
    )
    select
        'rule', r.user_id, msg.id, m.incident_id, r.id, r.name, rc.channel_id, s.status,
        case when s.status = 'queued' then now() end
    from (
        select
            u.incident_id,
            u.rule_id,
            row_number() over (partition by u.rule_id order by u.incident_id) as nth
        from unnest(matched_incidents, matched_rules) as u (incident_id, rule_id)
    ) as m
    inner join data.alert_rules as r on m.rule_id = r.id
    inner join data.alert_rule_channels as rc on r.id = rc.rule_id
    inner join data.alert_messages as msg on m.incident_id = msg.incident_id
    cross join lateral (
        select case
            when r.throttle_sec = 0 or (m.nth = 1 and r.id = any(fired)) then 'queued'
            else 'throttled'
        end as status
    ) as s
    on conflict do nothing;
    get diagnostics queued = row_count;

    insert into data.alert_deliveries (
        kind, message_id, incident_id, destination, url, status, next_attempt_at
    )
    select 'system', msg.id, n.id, d.name, d.url, 'queued', now()
    from new_rows as n
    inner join data.alert_messages as msg on n.id = msg.incident_id
    cross join data.alert_system_destinations as d
    on conflict do nothing;

    if queued > 0 or found then
        perform pg_catalog.pg_notify(internal.alerts_channel(), '');
    end if;
    return null;
end
$$;

comment on function internal.tg_incidents__queue_alerts() is
'Statement trigger on data.incidents: match the new incidents against every enabled alert rule (all given filters must match: incident type, units, radio channel, keywords on the transcript, address) and queue one delivery per rule channel (idempotent per incident x rule x channel), or record it throttled within the rule''s throttle_sec; queue one per system destination; store each matched incident''s envelope once (data.alert_messages); NOTIFY internal.alerts_channel(). In the writing transaction: a rolled-back incident queues nothing.';

create or replace trigger _100_count_inserts
after insert on data.incidents
referencing new table as new_rows
for each statement execute function internal.tg_incidents__count();

comment on trigger _100_count_inserts on data.incidents is
'Keeps data.incident_counts: rows inserted.';

create or replace trigger _100_count_deletes
after delete on data.incidents
referencing old table as old_rows
for each statement execute function internal.tg_incidents__count();

comment on trigger _100_count_deletes on data.incidents is
'Keeps data.incident_counts: rows deleted.';

create or replace trigger _100_count_updates
after update on data.incidents
referencing new table as new_rows
for each statement execute function internal.tg_incidents__count();

comment on trigger _100_count_updates on data.incidents is
'Keeps data.incident_counts.writes (the version): rows updated.';

create or replace trigger _100_count_truncates
after truncate on data.incidents
for each statement execute function internal.tg_incidents__count();

comment on trigger _100_count_truncates on data.incidents is
'Keeps data.incident_counts: truncate.';

create or replace trigger _500_record_event
after insert on data.incidents
referencing new table as new_rows
for each statement execute function internal.tg_incidents__record_event();

comment on trigger _500_record_event on data.incidents is
'Every new incident, whoever writes it, is recorded as a dispatch.incident.created event envelope (data.event_envelopes) in the same transaction.';

create or replace trigger _600_queue_alerts
after insert on data.incidents
referencing new table as new_rows
for each statement execute function internal.tg_incidents__queue_alerts();

comment on trigger _600_queue_alerts on data.incidents is
'Every new incident, whoever writes it, is matched against the alert rules in the same transaction (after its envelope is recorded by _500_record_event).';

create or replace trigger _900_queue_event
after insert on data.incidents
referencing new table as new_rows
for each statement execute function internal.tg_incidents__queue_event();

comment on trigger _900_queue_event on data.incidents is
'Every new incident, whoever writes it, becomes a queued event of the incidents stream (published, numbered, by internal.publish_events).';

-- Obsolete names (migrations 0006 and 0007 created them), dropped only now that no
-- trigger uses them.
drop function if exists internal.tg_count_incidents();
drop function if exists internal.tg_queue_event();
