-- Canonical events (upstream docs/EVENT_MODEL_v0.2.md, docs/API_CONTRACT_v0.1.md): the
-- view psql users read, the one envelope shape, batch ingest and the filtered list.
-- The log is data.event_envelopes (migrations/0008); what a valid envelope is lives in
-- sql/10_internal/envelopes.sql.

create view api.events as
select
    e.position,
    e.event_id,
    e.event_type,
    e.domain,
    e.schema_version,
    e.occurred_at,
    e.received_at,
    e.correlation_id,
    e.source_module,
    e.source_instance,
    e.source_system,
    e.payload
from data.event_envelopes as e;

comment on view api.events is
'Every stored event envelope. occurred_at is the envelope''s timestamp; source is source_module, source_instance, source_system; domain is event_type''s first segment. Order by occurred_at desc, position desc for newest first; api.event_json(e) gives the envelope as every route sends it.';

create function api.event_json(envelope api.events)
returns json
language plpgsql
-- plpgsql, so that this file does not depend on api.iso8601 (sql/30_api/incidents.sql,
-- applied after it) existing when it is created.
stable
parallel safe
as $$
begin
    return json_build_object(
        'event_id', envelope.event_id,
        'event_type', envelope.event_type,
        'schema_version', envelope.schema_version,
        'timestamp', api.iso8601(envelope.occurred_at),
        'received_at', api.iso8601(envelope.received_at),
        'correlation_id', envelope.correlation_id,
        'source', json_build_object(
            'module', envelope.source_module,
            'instance', envelope.source_instance,
            'system', envelope.source_system
        ),
        'payload', envelope.payload
    );
end
$$;

comment on function api.event_json(api.events) is
'The one JSON shape of an event envelope in every response (list, ingest, streams): event_id, event_type, schema_version, timestamp, received_at, correlation_id, source {module, instance, system}, payload; timestamps as api.iso8601 writes them, absent optional values null.';

create function api.ingest_events(batch jsonb)
returns json
language plpgsql
volatile
-- Writes data.event_envelopes, which no web role may touch; search_path pinned.
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    events jsonb := batch -> 'events';
    given integer;
    new_ids uuid[];
    report json;
    accepted integer;
    duplicates integer;
    rejected integer;
begin
    if jsonb_typeof(batch) is distinct from 'object' or jsonb_typeof(events) is distinct from 'array' then
        raise sqlstate 'PT400' using
            message = 'the body must be a batch: {"events": [envelope, ...]}',
            detail = '{"field": "events"}',
            hint = 'invalid_body';
    end if;
    given := jsonb_array_length(events);
    if given not between 1 and 500 then
        raise sqlstate 'PT400' using
            message = 'a batch holds 1 to 500 events, not ' || given,
            detail = json_build_object('field', 'events', 'count', given)::text,
            hint = 'invalid_body';
    end if;

    -- Store each valid event once: the first of an event_id within the batch, unless it is
    -- stored already (on conflict do nothing also waits for a concurrent batch holding
    -- the same event_id and then skips it: never two rows, never an error).
    with valid as (
        select
            e.n,
            e.event,
            (e.event ->> 'event_id')::uuid as event_id,
            row_number() over (partition by (e.event ->> 'event_id')::uuid order by e.n) as nth
        from jsonb_array_elements(events) with ordinality as e (event, n)
        where internal.envelope_problem(e.event) is null
    ),

    stored as (
        insert into data.event_envelopes as s (
            event_id, event_type, schema_version, occurred_at, correlation_id,
            source_module, source_instance, source_system, payload
        )
        select
            v.event_id,
            v.event ->> 'event_type',
            v.event ->> 'schema_version',
            (v.event ->> 'timestamp')::timestamptz,
            v.event ->> 'correlation_id',
            v.event #>> '{source,module}',
            v.event #>> '{source,instance}',
            v.event #>> '{source,system}',
            v.event -> 'payload'
        from valid as v
        where v.nth = 1
        order by v.n
        on conflict (event_id) do nothing
        returning s.event_id
    )

    select coalesce(array_agg(s.event_id), '{}') into new_ids from stored as s;

    -- A statement of its own: it sees what this batch and any concurrent one stored.
    with checked as (
        select
            e.n,
            e.event,
            internal.envelope_problem(e.event) as problem,
            row_number() over (partition by e.event ->> 'event_id' order by e.n) as nth
        from jsonb_array_elements(events) with ordinality as e (event, n)
    ),

    outcomes as (
        select
            c.n,
            c.problem,
            case when c.problem is null then (c.event ->> 'event_id')::uuid end as event_id,
            case
                when c.problem is not null then 'rejected'
                when c.nth = 1 and (c.event ->> 'event_id')::uuid = any(new_ids) then 'accepted'
                else 'duplicate'
            end as status,
            case when jsonb_typeof(c.event -> 'event_id') = 'string' then c.event -> 'event_id' end as sent_id
        from checked as c
    )

    select
        json_build_object(
            'results', coalesce(json_agg(
                case when o.status = 'rejected' then json_build_object(
                    'event_id', o.sent_id,
                    'status', o.status,
                    'error', json_build_object(
                        'code', 'validation_failed',
                        'message', coalesce(o.problem ->> 'field' || ' ', '') || (o.problem ->> 'message'),
                        'details', json_build_object('field', o.problem -> 'field')
                    )
                ) else json_build_object(
                    'event_id', o.event_id,
                    'status', o.status,
                    'event', api.event_json(a)
                ) end
                order by o.n
            ), '[]'),
            'accepted', count(*) filter (where o.status = 'accepted'),
            'duplicates', count(*) filter (where o.status = 'duplicate'),
            'rejected', count(*) filter (where o.status = 'rejected')
        ),
        count(*) filter (where o.status = 'accepted'),
        count(*) filter (where o.status = 'duplicate'),
        count(*) filter (where o.status = 'rejected')
    into report, accepted, duplicates, rejected
    from outcomes as o
    left join api.events as a on o.event_id = a.event_id;

    if rejected = 0 then
        perform set_config('response.status', '200', true);
    elsif rejected < given then
        perform set_config('response.status', '207', true);
    else
        -- Nothing stored: the platform's error shape, with the same per-event report.
        perform set_config('response.status', '422', true);
        return (jsonb_build_object(
            'error', jsonb_build_object(
                'code', 'validation_failed',
                'message', 'every event of the batch was rejected',
                'details', jsonb_build_object('rejected', rejected)
            )
        ) || report::jsonb)::json;
    end if;
    return report;
end
$$;

comment on function api.ingest_events(jsonb) is
E'@http POST /api/v1/ingest/events\n'
'@body {"type": "object", "required": ["events"], "properties": {"events": {"type": "array", "minItems": 1, "maxItems": 500, "items": {'
'"type": "object", "required": ["event_id", "event_type", "schema_version", "timestamp", "source", "payload"], "properties": {'
'"event_id": {"type": "string", "format": "uuid", "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", "description": "Globally unique (UUID v4 preferred): the idempotency key"}, '
'"event_type": {"type": "string", "maxLength": 200, "pattern": "^[a-z][a-z0-9_]*(\\\\.[a-z][a-z0-9_]*){2,}$", "description": "domain.entity.action, e.g. dispatch.incident.created"}, '
'"schema_version": {"type": "string", "maxLength": 64, "pattern": "^(0|[1-9][0-9]*)\\\\.(0|[1-9][0-9]*)\\\\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\\\\+[0-9A-Za-z.-]+)?$", "description": "Semantic version of the event type''s schema"}, '
'"timestamp": {"type": "string", "format": "date-time", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\\\.[0-9]+)?([Zz]|[+-](0[0-9]|1[0-5]):[0-9]{2})$", "description": "When the event happened (RFC 3339, with an offset)"}, '
'"correlation_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 200}, '
'"source": {"type": "object", "required": ["module", "instance"], "properties": {'
'"module": {"type": "string", "minLength": 1, "maxLength": 200}, '
'"instance": {"type": "string", "minLength": 1, "maxLength": 200}, '
'"system": {"type": ["string", "null"], "minLength": 1, "maxLength": 200}}}, '
'"payload": {"type": "object"}}, '
'"if": {"properties": {"event_type": {"const": "dispatch.incident.created"}, "schema_version": {"pattern": "^1\\\\."}}, "required": ["event_type", "schema_version"]}, '
'"then": {"properties": {"payload": {"required": ["incident_id", "dispatched_at", "audio"], "properties": {'
'"incident_id": {"type": "string", "minLength": 1, "maxLength": 200}, '
'"dispatched_at": {"type": "string", "format": "date-time", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\\\.[0-9]+)?([Zz]|[+-](0[0-9]|1[0-5]):[0-9]{2})$"}, '
'"audio": {"type": "object", "required": ["ref", "kind"], "properties": {"ref": {"type": "string", "minLength": 1, "maxLength": 2000}, "kind": {"enum": ["file", "object", "stream"]}, "uri": {"type": ["string", "null"], "minLength": 1, "maxLength": 2000}}}, '
'"special_call": {"type": ["boolean", "null"]}, "units": {"type": ["array", "null"], "items": {"type": "string"}}, '
'"channel": {"type": ["string", "null"]}, "incident_type": {"type": ["string", "null"]}, "address": {"type": ["string", "null"]}, '
'"original_text": {"type": ["string", "null"]}, "transcript": {"type": ["string", "null"]}, "parsed": {"type": ["object", "null"]}}}}}'
'}}}}\n'
'Stores a batch of 1 to 500 canonical event envelopes (EVENT_MODEL v0.2), each validated on its own and idempotent by event_id: a re-sent event (or one repeated within the batch, after its first) is a duplicate, never stored twice, even when batches race. '
'The report lists every event in the order sent: {"results": [{"event_id", "status": "accepted"|"duplicate"|"rejected", "event" (the stored envelope, as GET /api/v1/events shows it; not for rejected), "error" {code, message, details {field}} (rejected only)}], "accepted": n, "duplicates": n, "rejected": n}. '
'Status: 200 when no event is rejected; 207 when some are rejected and some are not (the others are stored); 422 when every event is rejected (nothing stored; the report with the platform''s "error" object). '
'400 for a body that is not a batch (not an object, no events array, 0 or more than 500 events). Unknown keys of an envelope are ignored; received_at is the hub''s.';

create function api.list_events(
    domain text default null,
    event_type text[] default null,
    system text default null,
    "from" timestamptz default null,
    "to" timestamptz default null,
    "limit" integer default 50,
    "offset" integer default 0
)
returns json
language plpgsql
-- volatile only because PostgreSQL allows EXPLAIN (the estimated total) in no other
-- kind of function. It writes nothing; as a GET route it runs read-only.
volatile
as $$
declare
    types text[] := array(
        select distinct t from unnest(list_events.event_type) as t where t is not null
    );
    exact_limit bigint := coalesce(
        nullif(current_setting('emberlog.exact_count_limit', true), '')::bigint, 1000
    );
    filters text[] := '{}';
    condition text := '';
    source text;
    items json;
    shown integer;
    total bigint;
    exact boolean := true;
    plan json;
begin
    if list_events."limit" is null or list_events."limit" not between 1 and 500 then
        raise sqlstate 'PT400' using
            message = 'limit must be between 1 and 500',
            detail = '{"field": "limit"}',
            hint = 'invalid_parameter';
    end if;
    if list_events."offset" is null or list_events."offset" < 0 then
        raise sqlstate 'PT400' using
            message = 'offset must be 0 or more',
            detail = '{"field": "offset"}',
            hint = 'invalid_parameter';
    end if;
    -- Only the filters given, so each combination is planned for its own index; values
    -- are bound ($1..$5), never spliced into the text.
    if list_events.domain is not null then filters := array_append(filters, 'e.domain = $1'); end if;
    if list_events.system is not null then filters := array_append(filters, 'e.source_system = $3'); end if;
    if list_events."from" is not null then filters := array_append(filters, 'e.occurred_at >= $4'); end if;
    if list_events."to" is not null then filters := array_append(filters, 'e.occurred_at <= $5'); end if;

    if cardinality(types) > 0 then
        -- Each event type read newest first from its own index (at most offset + limit
        -- rows each), then merged: no sort of every match.
        source := '(select e.* from unnest($2) as t (event_type) cross join lateral ('
            || 'select e.* from api.events as e where '
            || array_to_string(array_prepend('e.event_type = t.event_type', filters), ' and ')
            || ' order by e.occurred_at desc, e.position desc limit $6::bigint + $7) as e)';
        filters := array_append(filters, 'e.event_type = any($2)');
    else
        source := 'api.events';
    end if;
    if cardinality(filters) > 0 then
        condition := ' where ' || array_to_string(filters, ' and ');
    end if;

    execute 'select coalesce(json_agg(api.event_json(p::api.events)'
        || ' order by p.occurred_at desc, p.position desc), ''[]''), count(*)'
        || ' from (select e.* from ' || source || ' as e'
        || case when source = 'api.events' then condition else '' end
        || ' order by e.occurred_at desc, e.position desc limit $6 offset $7) as p'
    into items, shown
    using list_events.domain, types, list_events.system, list_events."from", list_events."to",
        list_events."limit", list_events."offset";

    -- The total without counting a million rows per request (as api.list_incidents):
    if shown between 1 and list_events."limit" - 1 or (shown = 0 and list_events."offset" = 0) then
        total := list_events."offset" + shown;  -- the last page: nothing to count
    else
        execute 'explain (format json) select from api.events as e' || condition into plan
        using list_events.domain, types, list_events.system, list_events."from", list_events."to";
        total := greatest(
            (plan -> 0 -> 'Plan' ->> 'Plan Rows')::bigint,
            case when shown > 0 then list_events."offset" + shown else 0 end
        );
        exact := total <= exact_limit;
        if exact then
            execute 'select count(*) from (select from api.events as e' || condition
                || ' limit $6) as m'
            into total
            using list_events.domain, types, list_events.system, list_events."from",
                list_events."to", exact_limit + 1;
            if total > exact_limit then
                exact := false;
            end if;
        end if;
    end if;

    return json_build_object(
        'data', items,
        'pagination', json_build_object(
            'limit', list_events."limit",
            'offset', list_events."offset",
            'total', total,
            'total_exact', exact
        )
    );
end
$$;

comment on function api.list_events(text, text[], text, timestamptz, timestamptz, integer, integer) is
E'@http GET /api/v1/events\n'
'@param domain {"maxLength": 200, "description": "The event type''s first segment: traffic, system, dispatch, ..."}\n'
'@param event_type {"maxItems": 20, "items": {"type": "string", "maxLength": 200}, "description": "Repeatable: any of these types"}\n'
'@param system {"maxLength": 200, "description": "source.system"}\n'
'@param from {"description": "Events whose timestamp is at or after this (ISO 8601)"}\n'
'@param to {"description": "Events whose timestamp is at or before this (ISO 8601)"}\n'
'@param limit {"minimum": 1, "maximum": 500}\n'
'@param offset {"minimum": 0, "maximum": 1000000}\n'
'Canonical event envelopes, newest first (timestamp, then position, descending): {"data": [envelope, ...], "pagination": {"limit", "offset", "total", "total_exact"}}. '
'Filters combine with AND; event_type may be repeated (any of them). total counts the matches exactly for up to emberlog.exact_count_limit matches (default 1000); above that it is the planner''s estimate and total_exact is false. limit 1 to 500 (default 50), offset 0 or more.';
