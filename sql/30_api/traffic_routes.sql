-- The traffic monitor's routes: Trunk Recorder's status in (also what
-- `emberlog-api mqtt-bridge` calls), and the reads of the web client's Traffic Monitor
-- (upstream packages/web/src/domains/traffic), over the views of sql/30_api/traffic.sql.

create function api.ingest_trunk_recorder(body jsonb)
returns json
language plpgsql
volatile
-- Writes data.traffic_* and data.event_envelopes, which no web role may touch.
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    batch boolean := jsonb_typeof(body) = 'array';
    given integer;
    checked record;
    outcome jsonb;
    outcomes jsonb[] := '{}';
    -- The settings, read once for the body (see internal.apply_trunk_recorder).
    reset_after interval := internal.interval_setting('emberlog.traffic_clock_reset', '10 minutes');
    max_rate double precision := internal.number_setting('emberlog.max_decoderate', '40');
    retention interval := internal.interval_setting('emberlog.decode_history_retention', '1 hour');
    results jsonb;
    report jsonb;
begin
    if jsonb_typeof(body) is distinct from 'object' and batch is not true then
        raise sqlstate 'PT400' using
            message = 'the body must be a Trunk Recorder status message (an object) or an array of 1 to 1000 of them',
            hint = 'invalid_body';
    end if;
    given := case when batch then jsonb_array_length(body) else 1 end;
    if given not between 1 and 1000 then
        raise sqlstate 'PT400' using
            message = 'a batch holds 1 to 1000 messages, not ' || given,
            detail = json_build_object('count', given)::text,
            hint = 'invalid_body';
    end if;

    -- The feeds this body writes, locked in one order for every writer (the bridge's
    -- connections, a second bridge, this route): concurrent batches touching the same
    -- feeds take turns instead of deadlocking.
    perform pg_advisory_xact_lock(internal.traffic_lock_class(), f.key)
    from (
        select distinct hashtext((m.message ->> 'instance_id') || '/' || (m.message ->> 'type')) as key
        from jsonb_array_elements(case when batch then body else jsonb_build_array(body) end) as m (message)
        where jsonb_typeof(m.message) = 'object'
    ) as f
    order by f.key;

    -- Every message checked at once; then, in the order sent, each valid one applied
    -- against what the ones before it left (a feed's messages must be applied in order).
    for checked in
        select c.n, c.message, c.problem, c.sent
        from internal.trunk_recorder_checked(case when batch then body else jsonb_build_array(body) end) as c
        order by c.n
    loop
        if checked.problem is null then
            outcome := internal.apply_trunk_recorder(checked.message, reset_after, max_rate, retention);
        else
            outcome := jsonb_build_object(
                'status', 'rejected',
                'error', jsonb_build_object(
                    'code', coalesce(checked.problem ->> 'code', 'validation_failed'),
                    'message', coalesce((checked.problem ->> 'field') || ' ', '') || (checked.problem ->> 'message'),
                    'details', jsonb_build_object('field', checked.problem -> 'field')
                )
            );
            if not batch then
                -- 422 for a malformed message; 409 for one at odds with the clock.
                raise using
                    errcode = case when checked.problem ? 'code' then 'PT409' else 'PT422' end,
                    message = outcome #>> '{error,message}',
                    detail = (outcome #> '{error,details}')::text,
                    hint = outcome #>> '{error,code}';
            end if;
        end if;
        outcomes := outcomes || (jsonb_build_object(
            'type', case when jsonb_typeof(checked.sent) = 'object' then checked.sent -> 'type' end,
            'instance_id', case when jsonb_typeof(checked.sent) = 'object' then checked.sent -> 'instance_id' end
        ) || outcome);
    end loop;
    results := to_jsonb(outcomes);

    if not batch then
        return results -> 0;
    end if;
    select jsonb_build_object(
        'results', results,
        'applied', count(*) filter (where r ->> 'status' = 'applied'),
        'ignored', count(*) filter (where r ->> 'status' = 'ignored'),
        'rejected', count(*) filter (where r ->> 'status' = 'rejected'),
        'events', coalesce(sum((r ->> 'events')::integer), 0)
    )
    into report
    from jsonb_array_elements(results) as r;
    if (report ->> 'rejected')::integer = 0 then
        perform set_config('response.status', '200', true);
    elsif (report ->> 'rejected')::integer < given then
        perform set_config('response.status', '207', true);
    else
        perform set_config('response.status', '422', true);
        return (jsonb_build_object('error', jsonb_build_object(
            'code', 'validation_failed',
            'message', 'every message of the batch was rejected',
            'details', jsonb_build_object('rejected', given)
        )) || report)::json;
    end if;
    return report::json;
end
$$;

-- The body's JSON Schema is built from the field table the checks use
-- (internal.trunk_recorder_schema), so the OpenAPI document says what they do.
do $comment$
begin
    execute pg_catalog.format(
        'comment on function api.ingest_trunk_recorder(jsonb) is %L',
        '@http POST /api/v1/ingest/trunk-recorder' || E'\n'
        || '@body ' || internal.trunk_recorder_schema()::text || E'\n'
        || 'Trunk Recorder''s status, as its MQTT status plugin publishes it (topics <prefix>/rates, /recorders, /calls_active): one message, or an array of up to 1000 applied in order. '
        || 'Each message updates the instance''s state in its transaction and records its events: rates -> the sites'' decode rates and one system.site.decode_rate.updated per site; recorders -> the recorder counts; calls_active -> the calls on the air, and traffic.call.started / traffic.call.ended for the calls that appeared / disappeared since the stored snapshot. '
        || 'A message older than the newest applied one of its instance and type, or the same message again, changes nothing ("status": "ignored"). '
        || 'One message: 200 {type, instance_id, status: applied|ignored, events, reason?}; 422 naming the first bad field (nothing written); 409 clock_ahead when its timestamp is more than emberlog.traffic_max_clock_ahead (10 minutes) ahead of the database''s clock. '
        || 'An array: {"results": [...], "applied", "ignored", "rejected", "events"}: 200, 207 when some were rejected (the others applied), 422 when all were. 400: neither.'
    );
end
$comment$;

create function api.get_traffic_summary(instance_id text default 'trunk-recorder')
returns json
language sql
stable
as $$
    select json_build_object(
        'event_id', gen_random_uuid(),
        'event_type', 'system.decode_sites.snapshot',
        'schema_version', '1.0.0',
        'timestamp', api.iso8601(coalesce(
            (select max(s.updated_at) from api.traffic_sites as s where s.instance_id = get_traffic_summary.instance_id),
            now()
        )),
        'source', json_build_object('module', 'emberlog-api', 'instance', get_traffic_summary.instance_id),
        'payload', json_build_object(
            'decode_sites', coalesce(
                (
                    select json_agg(s.site order by s.site_group, s.sys_name, s.sys_num)
                    from api.traffic_sites as s
                    where s.instance_id = get_traffic_summary.instance_id
                ),
                '[]'
            ),
            'recorders', (
                select json_build_object(
                    'total', coalesce(r.total, 0),
                    'recording', coalesce(r.recording, 0),
                    'idle', coalesce(r.idle, 0),
                    'available', coalesce(r.available, 0),
                    'updated_at', api.iso8601(r.updated_at)
                )
                from (select 1) as one
                left join api.traffic_recorders as r on r.instance_id = get_traffic_summary.instance_id
            ),
            'feed', (
                select json_build_object(
                    'last_seen_at', api.iso8601(f.last_seen_at),
                    'age_s', round(f.age_s::numeric, 1),
                    'status', coalesce(f.status, 'stale')
                )
                from (select 1) as one
                left join api.traffic_feeds as f on f.instance_id = get_traffic_summary.instance_id
            )
        )
    )
$$;

comment on function api.get_traffic_summary(text) is
E'@http GET /api/v1/traffic/summary\n'
'@param instance_id {"maxLength": 200, "description": "Trunk Recorder''s instance_id"}\n'
'Decode-rate health per site of one Trunk Recorder instance, as an event envelope (upstream''s shape): {event_id (new each time), event_type "system.decode_sites.snapshot", schema_version "1.0.0", timestamp (the newest site update, else now), source {module "emberlog-api", instance}, payload {decode_sites: [{group, sys_num, sys_name, decode_rate_pct, control_channel_mhz, interval_s, updated_at, status ok|warn|bad}] by group then sys_name, '
'recorders {total, recording, idle, available, updated_at}, feed {last_seen_at, age_s, status: healthy (a message within 10 s) | degraded (30 s) | stale}}}. An instance never heard from: 200 with empty values.';

create function api.list_live_calls(
    instance_id text default 'trunk-recorder',
    sys_name text[] default null,
    q text default null,
    hide_encrypted boolean default false
)
returns json
language sql
stable
as $$
    with wanted as (
        -- Repeated and/or comma-separated names, exact match.
        select array_agg(distinct btrim(n.name)) as names
        from unnest(list_live_calls.sys_name) as v (value)
        cross join lateral unnest(string_to_array(v.value, ',')) as n (name)
        where btrim(n.name) <> ''
    )

    select json_build_object(
        'instance_id', list_live_calls.instance_id,
        'updated_at', (
            select api.iso8601(f.calls_at)
            from api.traffic_feeds as f
            where f.instance_id = list_live_calls.instance_id
        ),
        'calls', coalesce(
            (
                select json_agg(json_build_object(
                    'id', c.id,
                    'started_at', api.iso8601(c.started_at),
                    'elapsed_s', c.elapsed_s,
                    'sys_num', c.sys_num,
                    'sys_name', c.sys_name,
                    'group', c.site_group,
                    'talkgroup_id', c.talkgroup_id,
                    'talkgroup', c.talkgroup,
                    'description', c.description,
                    'category', c.category,
                    'tag', c.tag,
                    'freq_mhz', c.freq_mhz,
                    'encrypted', c.encrypted,
                    'emergency', c.emergency,
                    'phase2_tdma', c.phase2_tdma,
                    'tdma_slot', c.tdma_slot,
                    'unit', c.unit,
                    'src_num', c.src_num,
                    'rec_num', c.rec_num,
                    'recorder_id', c.recorder_id
                ) order by c.started_at desc nulls last, c.elapsed_s desc, c.id)
                from api.traffic_live_calls as c, wanted as w
                where
                    c.instance_id = list_live_calls.instance_id
                    and (w.names is null or c.sys_name = any(w.names))
                    and not (coalesce(list_live_calls.hide_encrypted, false) and c.encrypted)
                    and (
                        coalesce(list_live_calls.q, '') = ''
                        or strpos(lower(coalesce(c.talkgroup, '')), lower(list_live_calls.q)) > 0
                        or strpos(lower(coalesce(c.description, '')), lower(list_live_calls.q)) > 0
                    )
            ),
            '[]'
        )
    )
$$;

comment on function api.list_live_calls(text, text[], text, boolean) is
E'@http GET /api/v1/traffic/live-calls\n'
'@param instance_id {"maxLength": 200, "description": "Trunk Recorder''s instance_id"}\n'
'@param sys_name {"maxItems": 50, "items": {"type": "string", "maxLength": 200}, "description": "Repeatable and/or comma-separated: only these systems (exact names)"}\n'
'@param q {"maxLength": 200, "description": "Case-insensitive text in the talkgroup''s alpha tag or description"}\n'
'@param hide_encrypted {"description": "Leave out encrypted calls"}\n'
'The calls on the air now (the instance''s latest calls_active snapshot), newest start first (calls without a start time last, longest first): {instance_id, updated_at (the snapshot''s timestamp), calls: [{id, started_at, elapsed_s, sys_num, sys_name, group, talkgroup_id, talkgroup, description, category, tag, freq_mhz, encrypted, emergency, phase2_tdma, tdma_slot, unit, src_num, rec_num, recorder_id}]}. '
'An instance never heard from: updated_at null, calls [].';

create function api.get_decode_history(instance_id text default 'trunk-recorder', "window" text default '15m')
returns json
language plpgsql
stable
-- security definer: reads the retention as the writer does (internal.interval_setting).
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    parts text[] := regexp_match(get_decode_history."window", '^([1-9][0-9]{0,5})([smh])$');
    span interval;
    retention interval := internal.interval_setting('emberlog.decode_history_retention', '1 hour');
    newest timestamptz;
begin
    if parts is null then
        raise sqlstate 'PT400' using
            message = 'window must be a number of seconds, minutes or hours, e.g. 90s, 15m, 1h',
            detail = '{"field": "window"}',
            hint = 'invalid_parameter';
    end if;
    span := make_interval(secs => parts[1]::double precision
        * case parts[2] when 's' then 1 when 'm' then 60 else 3600 end);
    span := least(span, retention);  -- a longer window: all that is kept (window_s says)
    select max(h.reported_at) into newest
    from api.traffic_decode_history as h
    where h.instance_id = get_decode_history.instance_id;
    return json_build_object(
        'instance_id', get_decode_history.instance_id,
        'window_s', extract(epoch from span)::bigint,
        'retention_s', extract(epoch from retention)::bigint,
        'from', api.iso8601(newest - span),
        'to', api.iso8601(newest),
        'sites', coalesce((
            select json_agg(json_build_object(
                'group', split_part(p.sys_name, '-', 1),
                'sys_num', p.sys_num,
                'sys_name', p.sys_name,
                'points', p.points
            ) order by split_part(p.sys_name, '-', 1), p.sys_name, p.sys_num)
            from (
                select
                    h.sys_num,
                    (array_agg(h.sys_name order by h.reported_at desc))[1] as sys_name,
                    json_agg(json_build_object(
                        'at', api.iso8601(h.reported_at), 'decode_rate_pct', h.decode_rate_pct
                    ) order by h.reported_at) as points
                from api.traffic_decode_history as h
                where h.instance_id = get_decode_history.instance_id and h.reported_at > newest - span
                group by h.sys_num
            ) as p
        ), '[]')
    );
end
$$;

comment on function api.get_decode_history(text, text) is
E'@http GET /api/v1/traffic/decode-history\n'
'@param instance_id {"maxLength": 200, "description": "Trunk Recorder''s instance_id"}\n'
'@param window {"maxLength": 8, "pattern": "^[1-9][0-9]{0,5}[smh]$", "description": "How far back from the newest point: 90s, 15m, 1h (longer than the history kept: all of it)"}\n'
'Recent decode rates per site, one point per rates message, oldest first: {instance_id, window_s, retention_s (emberlog.decode_history_retention, default 1 hour), from, to (the newest point), sites: [{group, sys_num, sys_name, points: [{at, decode_rate_pct}]}]}. '
'The window ends at the newest point, so a feed that stopped still shows its last minutes (GET /api/v1/traffic/summary tells whether it is stale). A window longer than the history kept is all of it (window_s says how long). 400 for a window not like 15m.';
