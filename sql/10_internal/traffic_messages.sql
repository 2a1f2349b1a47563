-- Trunk Recorder's status messages (its MQTT status plugin: rates, recorders,
-- calls_active): what a valid one is, and its entries with their values typed. Applying
-- them to the traffic monitor's state: sql/10_internal/traffic_state.sql. A DBA changes
-- a rule here and runs `make migrate`.
--
-- The value helpers (tr_number, tr_flag, tr_value_problem, tr_typed) have no SET clause
-- so that PostgreSQL can inline them (they run for every field of every entry); they
-- call only pg_catalog, which is searched first whatever the search_path.

create or replace function internal.tr_number(value jsonb)
returns numeric
language sql
immutable
parallel safe
as $$
    -- A JSON number, or a decimal number in a string (older plugin versions send every
    -- value as a string); null for anything else.
    select case pg_catalog.jsonb_typeof(value)
        when 'number' then (value #>> '{}')::numeric
        when 'string' then case
            when pg_catalog.btrim(value #>> '{}') ~ '^[+-]?[0-9]{1,20}(\.[0-9]{0,20})?$'
                then pg_catalog.btrim(value #>> '{}')::numeric
        end
    end
$$;

comment on function internal.tr_number(jsonb) is
'A Trunk Recorder number: a JSON number, or a decimal in a string (older plugin versions send strings); else null.';

create or replace function internal.tr_flag(value jsonb)
returns boolean
language sql
immutable
parallel safe
as $$
    select case pg_catalog.jsonb_typeof(value)
        when 'boolean' then (value #>> '{}')::boolean
        when 'number' then case value #>> '{}' when '1' then true when '0' then false end
        when 'string' then case pg_catalog.lower(pg_catalog.btrim(value #>> '{}'))
            when 'true' then true when '1' then true
            when 'false' then false when '0' then false when '' then false
        end
    end
$$;

comment on function internal.tr_flag(jsonb) is
'A Trunk Recorder flag: true/false, 1/0, or the strings "true"/"false"/"1"/"0"/"" (older plugin versions); else null. (Upstream reads the string "false" as true; this does not.)';

create or replace function internal.tr_value_problem(value jsonb, kind text)
returns text
language sql
immutable
parallel safe
as $$
    -- Null (fine) for an absent or null value: whether it is required is the caller's.
    select case
        when coalesce(pg_catalog.jsonb_typeof(value), 'null') = 'null' then null
        when kind = 'flag' then case
            when internal.tr_flag(value) is null then 'must be true or false'
        end
        when kind in ('text', 'name', 'id') then case
            when pg_catalog.jsonb_typeof(value) not in ('string', 'number')
                or (kind = 'name' and pg_catalog.jsonb_typeof(value) <> 'string')
                then 'must be a string'
            when kind in ('name', 'id') and pg_catalog.length(value #>> '{}') not between 1 and 200
                then 'must have 1 to 200 characters'
            when pg_catalog.length(value #>> '{}') > 500 then 'must have at most 500 characters'
        end
        else (
            select case
                when n is null then 'must be a number'
                when kind = 'integer' and (n <> trunc(n) or n not between -2147483648 and 2147483647)
                    then 'must be an integer'
                when kind = 'epoch' and n not between 0 and 32503680000
                    then 'must be seconds since 1970-01-01 (epoch)'
                when kind = 'number' and abs(n) >= 1e15 then 'is out of range'
            end
            from (select internal.tr_number(value) as n) as x
        )
    end
$$;

comment on function internal.tr_value_problem(jsonb, text) is
'Null when value is absent, null, or of the kind (integer, number, epoch, flag, text, name, id); otherwise what is wrong.';

create or replace function internal.tr_typed(value jsonb, kind text)
returns jsonb
language sql
immutable
parallel safe
as $$
    -- A valid value (internal.tr_value_problem) as its kind's JSON type.
    select case
        when coalesce(pg_catalog.jsonb_typeof(value), 'null') = 'null' then 'null'::jsonb
        when kind = 'flag' then pg_catalog.to_jsonb(internal.tr_flag(value))
        when kind in ('text', 'name', 'id') then pg_catalog.to_jsonb(value #>> '{}')
        -- Integers as integers (1.0 -> 1); other numbers to nine decimals, so that each
        -- fits a double precision (1e-400 -> 0).
        when kind = 'integer' then pg_catalog.to_jsonb(internal.tr_number(value)::bigint)
        else pg_catalog.to_jsonb(pg_catalog.trim_scale(pg_catalog.round(internal.tr_number(value), 9)))
    end
$$;

comment on function internal.tr_typed(jsonb, text) is
'A valid Trunk Recorder value as its kind''s JSON type: integers as integers (1.0 -> 1), other numbers rounded to nine decimals, flags as booleans, texts and ids as strings.';

create or replace function internal.trunk_recorder_fields(message_type text)
returns table (field text, kind text, required boolean, ord integer)
language sql
immutable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
    -- The fields of one entry of each message type that are checked and typed (from the
    -- plugin's sources); others are kept as sent. Required: what the state needs.
    select f.field, f.kind, f.required, f.ord::integer
    from (
        values
        ('rates', 'sys_num', 'integer', true, 1),
        ('rates', 'sys_name', 'name', true, 2),
        ('rates', 'decoderate', 'number', true, 3),
        ('rates', 'decoderate_interval', 'number', false, 4),
        ('rates', 'control_channel', 'number', false, 5),
        ('recorders', 'id', 'id', false, 1),
        ('recorders', 'src_num', 'integer', false, 2),
        ('recorders', 'rec_num', 'integer', false, 3),
        ('recorders', 'type', 'text', false, 4),
        ('recorders', 'freq', 'number', false, 5),
        ('recorders', 'duration', 'number', false, 6),
        ('recorders', 'count', 'number', false, 7),
        ('recorders', 'rec_state', 'integer', false, 8),
        ('recorders', 'rec_state_type', 'text', false, 9),
        ('recorders', 'squelched', 'flag', false, 10),
        ('calls_active', 'id', 'id', true, 1),
        ('calls_active', 'call_num', 'number', false, 2),
        ('calls_active', 'sys_num', 'integer', false, 3),
        ('calls_active', 'sys_name', 'name', true, 4),
        ('calls_active', 'freq', 'number', false, 5),
        ('calls_active', 'unit', 'number', false, 6),
        ('calls_active', 'unit_alpha_tag', 'text', false, 7),
        ('calls_active', 'talkgroup', 'number', false, 8),
        ('calls_active', 'talkgroup_alpha_tag', 'text', false, 9),
        ('calls_active', 'talkgroup_description', 'text', false, 10),
        ('calls_active', 'talkgroup_group', 'text', false, 11),
        ('calls_active', 'talkgroup_tag', 'text', false, 12),
        ('calls_active', 'talkgroup_patches', 'text', false, 13),
        ('calls_active', 'elapsed', 'number', false, 14),
        ('calls_active', 'length', 'number', false, 15),
        ('calls_active', 'phase2_tdma', 'flag', false, 16),
        ('calls_active', 'phase2', 'flag', false, 17),
        ('calls_active', 'tdma_slot', 'integer', false, 18),
        ('calls_active', 'analog', 'flag', false, 19),
        ('calls_active', 'conventional', 'flag', false, 20),
        ('calls_active', 'encrypted', 'flag', false, 21),
        ('calls_active', 'emergency', 'flag', false, 22),
        ('calls_active', 'rec_num', 'integer', false, 23),
        ('calls_active', 'src_num', 'integer', false, 24),
        ('calls_active', 'start_time', 'epoch', false, 25),
        ('calls_active', 'stop_time', 'epoch', false, 26)
    ) as f (message_type, field, kind, required, ord)
    where f.message_type = trunk_recorder_fields.message_type
$$;

comment on function internal.trunk_recorder_fields(text) is
'The checked fields of one entry of a Trunk Recorder message type (rates, recorders, calls_active): name, kind (internal.tr_value_problem), whether required, order. Other fields are stored as sent.';

create or replace function internal.trunk_recorder_list(message_type text)
returns text
language sql
immutable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
    select case message_type
        when 'rates' then 'rates' when 'recorders' then 'recorders' when 'calls_active' then 'calls'
    end
$$;

comment on function internal.trunk_recorder_list(text) is
'The key of a message type''s entries: rates -> rates, recorders -> recorders, calls_active -> calls; null for other types.';

create or replace function internal.trunk_recorder_problem(message jsonb)
returns jsonb
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    message_type text := message ->> 'type';
    list_key text := internal.trunk_recorder_list(message_type);
    entries jsonb := message -> list_key;
    problem text;
    found jsonb;
begin
    if jsonb_typeof(message) is distinct from 'object' then
        return jsonb_build_object('field', null, 'message', 'a message must be a JSON object');
    end if;
    if list_key is null then
        return jsonb_build_object('field', 'type', 'message', 'must be rates, recorders or calls_active');
    end if;
    problem := internal.text_problem(message -> 'instance_id', true, 200);
    if problem is not null then
        return jsonb_build_object('field', 'instance_id', 'message', problem);
    end if;
    problem := coalesce(
        internal.tr_value_problem(message -> 'timestamp', 'epoch'),
        case when coalesce(jsonb_typeof(message -> 'timestamp'), 'null') = 'null' then 'is required' end
    );
    if problem is not null then
        return jsonb_build_object('field', 'timestamp', 'message', problem || ' (seconds since 1970)');
    end if;
    if jsonb_typeof(entries) is distinct from 'array' then
        return jsonb_build_object('field', list_key, 'message', 'must be an array');
    end if;
    if jsonb_array_length(entries) > 2000 then
        return jsonb_build_object('field', list_key, 'message', 'may hold at most 2000 entries');
    end if;
    select jsonb_build_object(
        'field', list_key || '[' || (e.n - 1) || ']' || coalesce('.' || f.field, ''),
        'message', p.problem
    )
    into found
    from jsonb_array_elements(entries) with ordinality as e (entry, n)
    left join internal.trunk_recorder_fields(message_type) as f on jsonb_typeof(e.entry) = 'object'
    cross join lateral (
        select case
            when jsonb_typeof(e.entry) <> 'object' then 'must be an object'
            when f.required and coalesce(jsonb_typeof(e.entry -> f.field), 'null') = 'null' then 'is required'
            else internal.tr_value_problem(e.entry -> f.field, f.kind)
        end as problem
    ) as p
    where p.problem is not null
    order by e.n, f.ord
    limit 1;
    return found;
end
$$;

comment on function internal.trunk_recorder_problem(jsonb) is
'Null when message is a valid Trunk Recorder status message ({type: rates|recorders|calls_active, instance_id, timestamp (epoch seconds), rates|recorders|calls: [entry, ...]}, at most 2000 entries, each entry''s fields as internal.trunk_recorder_fields says); otherwise {field, message} of the first problem (field e.g. "calls[2].talkgroup").';

create or replace function internal.trunk_recorder_entries(message jsonb)
returns table (n bigint, entry jsonb)
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    -- Each entry of a valid message with its checked fields typed, in the order sent.
    select e.n, e.entry || coalesce(typed.fields, '{}')
    from jsonb_array_elements(message -> internal.trunk_recorder_list(message ->> 'type'))
        with ordinality as e (entry, n)
    cross join lateral (
        select jsonb_object_agg(f.field, internal.tr_typed(e.entry -> f.field, f.kind)) as fields
        from internal.trunk_recorder_fields(message ->> 'type') as f
        where e.entry ? f.field
    ) as typed
$$;

comment on function internal.trunk_recorder_entries(jsonb) is
'The entries of a valid Trunk Recorder message, in order, each with its checked fields as their JSON types (numbers, booleans, strings) and other fields as sent.';
