-- Trunk Recorder's status into the traffic monitor's state (data.traffic_*,
-- migrations/0009) and the canonical events each message records in the same
-- transaction. Entry point: internal.apply_trunk_recorder, called by
-- api.ingest_trunk_recorder (the HTTP route and the MQTT bridge alike) for messages
-- sql/10_internal/traffic_messages.sql checked and typed. Edit here and run `make migrate`.

create or replace function internal.traffic_lock_class()
returns integer
language sql
immutable
parallel safe
return 1953653094;  -- 0x74726166, "traf"

comment on function internal.traffic_lock_class() is
'The class of the advisory locks (pg_advisory_xact_lock(class, hashtext(instance_id || ''/'' || type))) api.ingest_trunk_recorder takes on the feeds a body writes, in key order, so concurrent writers never deadlock. In pg_locks: locktype advisory, classid this number, objsubid 2.';

create or replace function internal.decode_status(decode_rate_pct double precision)
returns text
language sql
immutable
parallel safe
as $$
    -- (No SET clause, so that PostgreSQL inlines it; only pg_catalog's operators.)
    select case
        when decode_rate_pct >= 90 then 'ok'
        when decode_rate_pct >= 70 then 'warn'
        else 'bad'
    end
$$;

comment on function internal.decode_status(double precision) is
'A site''s health from its decode rate (percent of emberlog.max_decoderate): ok from 90, warn from 70, else bad (upstream''s thresholds).';

create or replace function internal.apply_rates(
    instance text, reported timestamptz, message jsonb,
    max_rate double precision, retention interval
)
returns integer
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    emitted integer;
begin
    with latest as (
        -- A site listed twice: its last entry.
        select distinct on ((e.entry ->> 'sys_num')::integer)
            (e.entry ->> 'sys_num')::integer as sys_num,
            e.entry ->> 'sys_name' as sys_name,
            (e.entry ->> 'decoderate')::double precision as decoderate,
            (e.entry ->> 'decoderate_interval')::double precision as interval_s,
            round((e.entry ->> 'control_channel')::numeric)::bigint as control_channel_hz
        from jsonb_array_elements(message -> 'rates') with ordinality as e (entry, n)
        order by (e.entry ->> 'sys_num')::integer, e.n desc
    ),

    rated as (
        -- Percent, to two decimals (the web client shows one).
        select
            l.*,
            round((l.decoderate / greatest(max_rate, 1e-9) * 100)::numeric, 2)::double precision as pct
        from latest as l
    ),

    sites as (
        select
            r.*,
            internal.decode_status(r.pct) as status,
            jsonb_build_object(
                'group', split_part(r.sys_name, '-', 1),
                'sys_num', r.sys_num,
                'sys_name', r.sys_name,
                'decode_rate_pct', r.pct,
                'control_channel_mhz', r.control_channel_hz::double precision / 1000000,
                'interval_s', r.interval_s,
                'updated_at', internal.iso8601(reported),
                'status', internal.decode_status(r.pct)
            ) as site
        from rated as r
    ),

    -- (Data-modifying CTEs run to completion whether or not the query reads them.)
    stored as (
        insert into data.traffic_sites as t (
            instance_id, sys_num, sys_name, decoderate, decode_rate_pct, interval_s,
            control_channel_hz, status, site, reported_at, received_at
        )
        select
            instance, s.sys_num, s.sys_name, s.decoderate, s.pct, s.interval_s,
            s.control_channel_hz, s.status, s.site, reported, now()
        from sites as s
        on conflict (instance_id, sys_num) do update set
            sys_name = excluded.sys_name,
            decoderate = excluded.decoderate,
            decode_rate_pct = excluded.decode_rate_pct,
            interval_s = excluded.interval_s,
            control_channel_hz = excluded.control_channel_hz,
            status = excluded.status,
            site = excluded.site,
            reported_at = excluded.reported_at,
            received_at = excluded.received_at
        returning t.sys_num
    ),

    history as (
        insert into data.traffic_decode_history (instance_id, sys_num, reported_at, sys_name, decode_rate_pct)
        select instance, s.sys_num, reported, s.sys_name, s.pct from sites as s
        on conflict do nothing
        returning 1
    )

    insert into data.event_envelopes (
        event_id, event_type, schema_version, occurred_at, source_module, source_instance,
        source_system, payload
    )
    select
        gen_random_uuid(), 'system.site.decode_rate.updated', '1.0.0', reported,
        'emberlog-api', instance, s.sys_name, s.site
    from sites as s
    order by s.site ->> 'group', s.sys_name;
    get diagnostics emitted = row_count;

    -- What is older than the retention, and what is "newer" than this message (points of
    -- a clock that has since been set back: see internal.apply_trunk_recorder).
    delete from data.traffic_decode_history as h
    where
        h.instance_id = instance
        and (h.reported_at < reported - retention or h.reported_at > reported);
    return emitted;
end
$$;

comment on function internal.apply_rates(text, timestamptz, jsonb, double precision, interval) is
'Applies a valid rates message: the latest decode rate of each listed site (decode_rate_pct = decoderate / max_rate x 100: the control-channel messages a second that count as 100 %, emberlog.max_decoderate, default 40, upstream''s MAX_DECODERATE), status by internal.decode_status), a point of decode history per site (older than retention, emberlog.decode_history_retention, default 1 hour, deleted; the caller reads both settings once per batch), and one system.site.decode_rate.updated event per site whose payload is the site as GET /api/v1/traffic/summary lists it. Returns how many events.';

create or replace function internal.apply_recorders(
    instance text, reported timestamptz, message jsonb
)
returns integer
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
begin
    insert into data.traffic_recorders as t (
        instance_id, total, recording, idle, available, recorders, reported_at, received_at
    )
    select
        instance,
        count(e.entry),
        count(*) filter (where e.entry ->> 'rec_state_type' = 'RECORDING'),
        count(*) filter (where e.entry ->> 'rec_state_type' = 'IDLE'),
        count(*) filter (where e.entry ->> 'rec_state_type' = 'AVAILABLE'),
        coalesce(jsonb_agg(e.entry order by e.n) filter (where e.entry is not null), '[]'),
        reported,
        now()
    from (select 1) as one
    left join jsonb_array_elements(message -> 'recorders') with ordinality as e (entry, n) on true
    on conflict (instance_id) do update set
        total = excluded.total,
        recording = excluded.recording,
        idle = excluded.idle,
        available = excluded.available,
        recorders = excluded.recorders,
        reported_at = excluded.reported_at,
        received_at = excluded.received_at;
    return 0;
end
$$;

comment on function internal.apply_recorders(text, timestamptz, jsonb) is
'Applies a valid recorders message: the instance''s recorders as sent (typed) and their counts by rec_state_type (RECORDING, IDLE, AVAILABLE; total counts all). Records no event; returns 0.';

create or replace function internal.call_payload(event_type text, call jsonb)
returns jsonb
language sql
stable  -- as jsonb_build_object is: so that PostgreSQL inlines it
parallel safe
as $$
    -- EVENT_MODEL v0.2 §4.1 (upstream's payload): ids as strings; talkgroup is
    -- "trunkgroup" there; frequency in Hz; duration_seconds only when a call ended.
    -- (No SET clause: inlined into the insert of internal.apply_calls_active.)
    select jsonb_strip_nulls(jsonb_build_object(
        'system', call ->> 'sys_name',
        'site', coalesce(call ->> 'sys_num', 'default'),
        'call_id', call ->> 'id',
        'trunkgroup_id', call ->> 'talkgroup',
        'trunkgroup_label', nullif(call ->> 'talkgroup_alpha_tag', ''),
        'frequency', call -> 'freq',
        'encrypted', call -> 'encrypted',
        'emergency', call -> 'emergency',
        'duration_seconds', case when event_type = 'traffic.call.ended' then call -> 'elapsed' end
    ))
$$;

comment on function internal.call_payload(text, jsonb) is
'The payload of a traffic.call.started or traffic.call.ended event for a (typed) calls_active entry: {system (sys_name), site (sys_num as text, else "default"), call_id, trunkgroup_id?, trunkgroup_label?, frequency? (Hz), encrypted?, emergency?, duration_seconds? (ended: the call''s last elapsed)}.';

create or replace function internal.apply_calls_active(
    instance text, reported timestamptz, message jsonb
)
returns integer
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    emitted integer;
begin
    -- The stored snapshot is the previous one (whichever process wrote it): calls not in
    -- this one ended, calls not in that one started. Both in this transaction, so a
    -- restart or a second bridge neither loses nor repeats an event.
    with current_calls as (
        select distinct on (e.entry ->> 'id')
            e.entry ->> 'id' as call_id,
            e.entry
        from jsonb_array_elements(message -> 'calls') with ordinality as e (entry, n)
        order by e.entry ->> 'id', e.n desc
    ),

    ended as (
        delete from data.traffic_calls as t
        where
            t.instance_id = instance
            and not exists (select from current_calls as c where c.call_id = t.call_id)
        returning t.call_id, t.entry
    ),

    upserted as (
        insert into data.traffic_calls as t (
            instance_id, call_id, sys_num, sys_name, started_at, first_seen_at, entry
        )
        select
            instance,
            c.call_id,
            (c.entry ->> 'sys_num')::integer,
            c.entry ->> 'sys_name',
            to_timestamp(nullif((c.entry ->> 'start_time')::double precision, 0)),
            reported,
            c.entry
        from current_calls as c
        on conflict (instance_id, call_id) do update set
            sys_num = excluded.sys_num,
            sys_name = excluded.sys_name,
            started_at = excluded.started_at,
            entry = excluded.entry
        -- (xmax = 0: inserted now, not updated)
        returning t.call_id, t.entry, t.started_at, t.xmax = 0 as started
    )

    insert into data.event_envelopes (
        event_id, event_type, schema_version, occurred_at, source_module, source_instance,
        source_system, payload
    )
    select
        gen_random_uuid(), x.event_type, '1.0.0', x.happened, 'emberlog-api', instance,
        x.entry ->> 'sys_name', internal.call_payload(x.event_type, x.entry)
    from (
        select 1 as step, u.call_id, u.entry, coalesce(u.started_at, reported) as happened, 'traffic.call.started' as event_type
        from upserted as u
        where u.started
        union all
        select 2, d.call_id, d.entry, reported, 'traffic.call.ended'
        from ended as d
    ) as x
    order by x.step, x.call_id;
    get diagnostics emitted = row_count;
    return emitted;
end
$$;

comment on function internal.apply_calls_active(text, timestamptz, jsonb) is
'Applies a valid calls_active message: the instance''s calls on the air become this snapshot (data.traffic_calls); one traffic.call.started event (payload: internal.call_payload) per call not in the stored snapshot (timestamp: its start_time, else the message''s), then one traffic.call.ended per stored call not in this one (timestamp: the message''s), each group in call id order. Returns how many events.';

create or replace function internal.apply_trunk_recorder(
    message jsonb, reset_after interval, max_rate double precision, retention interval
)
returns jsonb
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    message_type text := message ->> 'type';
    instance text := message ->> 'instance_id';
    reported timestamptz := to_timestamp((message ->> 'timestamp')::double precision);
    -- The message's fingerprint (64 bits, hashed from its binary form: no text made).
    digest text := jsonb_hash_extended(message, 0)::text;
    emitted integer;
begin
    -- The feed's clock (its row locked to the end of the transaction; writers of one
    -- feed take turns, in the order api.ingest_trunk_recorder locks feeds): a message
    -- older than the newest applied one, or applied already (the same message
    -- redelivered), changes nothing.
    insert into data.traffic_feeds as f (instance_id, message_type, reported_at, applied_digests, received_at)
    values (instance, message_type, reported, array[digest], now())
    on conflict on constraint traffic_feeds_pkey do update set
        reported_at = excluded.reported_at,
        applied_digests = case
            when f.reported_at = excluded.reported_at
                then (f.applied_digests || excluded.applied_digests)[greatest(cardinality(f.applied_digests) - 98, 1):]
            else excluded.applied_digests
        end,
        received_at = excluded.received_at
    where
        f.reported_at < excluded.reported_at
        or (f.reported_at = excluded.reported_at and not digest = any(f.applied_digests))
        -- This much older than the feed's clock (reset_after: emberlog.traffic_clock_reset):
        -- the instance's clock was set back (a restart, NTP), not a late delivery.
        or excluded.reported_at < f.reported_at - reset_after;
    if not found then
        return jsonb_build_object(
            'status', 'ignored',
            'reason', 'older than the state already stored, or already applied',
            'events', 0
        );
    end if;
    emitted := case message_type
        when 'rates' then internal.apply_rates(instance, reported, message, max_rate, retention)
        when 'recorders' then internal.apply_recorders(instance, reported, message)
        when 'calls_active' then internal.apply_calls_active(instance, reported, message)
    end;
    return jsonb_build_object('status', 'applied', 'events', emitted);
end
$$;

comment on function internal.apply_trunk_recorder(jsonb, interval, double precision, interval) is
'Applies one valid Trunk Recorder status message, as internal.trunk_recorder_checked types it, in the caller''s transaction: {"status": "applied", "events": n}, or {"status": "ignored", "reason"} when the feed (instance and type) already holds a newer message or this very one (data.traffic_feeds); a message older than the feed''s clock by more than reset_after (emberlog.traffic_clock_reset, default 10 minutes, read once per batch by the caller) means the instance''s clock was set back: it is applied and resets the clock. max_rate and retention: see internal.apply_rates. See internal.apply_rates, apply_recorders, apply_calls_active.';
