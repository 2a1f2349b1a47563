-- Trunk Recorder's status messages (its MQTT status plugin: rates, recorders,
-- calls_active): what a valid one is, and its entries with their values typed, checked
-- for a whole batch in one query (internal.trunk_recorder_checked). Applying them to the
-- traffic monitor's state: sql/10_internal/traffic_state.sql. A DBA changes a rule here
-- and runs `make migrate`.
--
-- internal.tr_value and internal.trunk_recorder_fields run for every field of every
-- entry: SQL table functions without a SET clause, so that PostgreSQL inlines them into
-- the batch's query (no call per field), which runs under the search_path that
-- internal.trunk_recorder_checked pins.

create or replace function internal.tr_pattern(kind text)
returns text
language sql
immutable
parallel safe
as $$
    -- (No SET clause: inlined, a constant, where the kind is.)
    select case kind
        when 'integer' then '^ *[+-]?[0-9]{1,9}(\.0{0,20})? *$'
        when 'number' then '^ *[+-]?[0-9]{1,15}(\.[0-9]{0,20})? *$'
        when 'epoch' then '^ *\+?[0-9]{1,10}(\.[0-9]{0,20})? *$'
        when 'flag' then '^ *([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[01])? *$'
    end
$$;

comment on function internal.tr_pattern(text) is
'The strings older plugin versions send for a value of this kind (integer, number, epoch, flag), as a regular expression: both what internal.tr_value accepts and what the route''s JSON Schema says (internal.tr_schema).';

create or replace function internal.tr_value(value jsonb, kind text)
returns table (problem text, typed jsonb, missing boolean)
language sql
immutable
parallel safe
as $$
    select
        case
            when x.json_type = 'null' then null  -- absent or null: whether required is the caller's
            when x.json_type = 'string' and kind in ('integer', 'number', 'epoch', 'flag')
                and (value #>> '{}') !~ internal.tr_pattern(kind)
                then case kind
                    when 'flag' then 'must be true or false'
                    when 'integer' then 'must be an integer'
                    else 'must be a number'
                end
            when kind = 'flag' then case when x.flag is null then 'must be true or false' end
            when kind = 'name' then case
                when x.json_type <> 'string' then 'must be a string'
                when length(value #>> '{}') not between 1 and 200 then 'must have 1 to 200 characters'
            end
            when kind in ('text', 'id') then case
                when x.json_type = 'string' then case
                    when kind = 'id' and length(value #>> '{}') not between 1 and 200
                        then 'must have 1 to 200 characters'
                    when length(value #>> '{}') > 500 then 'must have at most 500 characters'
                end
                when x.json_type <> 'number' or abs(x.n) >= 1e15 or (kind = 'id' and x.n <> trunc(x.n))
                    then 'must be a string'
            end
            when x.n is null then 'must be a number'
            when kind = 'integer' and (x.n <> trunc(x.n) or x.n not between -2147483648 and 2147483647)
                then 'must be an integer'
            when kind = 'epoch' and x.n not between 0 and 32503680000
                then 'must be seconds since 1970-01-01 (epoch)'
            when kind = 'number' and abs(x.n) >= 1e15 then 'is out of range'
        end,
        -- The value as its kind's JSON type, where it is not that already (null when it
        -- is, or is absent): integers as integers (1.0 -> 1), other numbers to nine
        -- decimals (each fits a double precision: 1e-400 -> 0), flags as booleans,
        -- texts and ids as strings. (Computed for invalid values too, never failing:
        -- callers use it only when there is no problem.)
        case
            when x.json_type = 'null' then null
            when kind = 'flag' then case when x.json_type <> 'boolean' then to_jsonb(x.flag) end
            when kind in ('text', 'name', 'id') then case
                when x.json_type <> 'string' then to_jsonb(value #>> '{}')
            end
            when kind = 'integer' then case
                -- (in range only: out of it, the problem says so and nothing is cast)
                when (x.json_type <> 'number' or scale(x.n) > 0) and abs(x.n) < 1e15
                    then to_jsonb(x.n::bigint)
            end
            when x.json_type <> 'number' or scale(x.n) > 9 then to_jsonb(trim_scale(round(x.n, 9)))
        end,
        x.json_type = 'null'
    from (
        select
            coalesce(jsonb_typeof(value), 'null') as json_type,
            -- A number: a JSON number, or a decimal in a string (older plugin versions
            -- send every value as a string; internal.tr_pattern says which).
            case jsonb_typeof(value)
                when 'number' then value::numeric
                when 'string' then case
                    when kind in ('integer', 'number', 'epoch') and (value #>> '{}') ~ internal.tr_pattern(kind)
                        then btrim(value #>> '{}')::numeric
                end
            end as n,
            -- A flag: true/false, 1/0, "true"/"false"/"1"/"0"/"" (upstream reads the
            -- string "false" as true; this does not).
            case jsonb_typeof(value)
                when 'boolean' then value::boolean
                when 'number' then case value::numeric when 1 then true when 0 then false end
                when 'string' then case lower(btrim(value #>> '{}'))
                    when 'true' then true when '1' then true
                    when 'false' then false when '0' then false when '' then false
                end
            end as flag
    ) as x
$$;

comment on function internal.tr_value(jsonb, text) is
'One Trunk Recorder value checked against its kind (integer, number, epoch, flag, text, name, id; the JSON Schema of each: internal.tr_schema): problem (null when fine, also for an absent or null value: whether it is required is the caller''s); typed, the value as its kind''s JSON type where it is not that already (integers as integers, other numbers to nine decimals, flags as booleans, also from the strings older plugins send: internal.tr_pattern; texts and ids as strings), else null; missing, whether it is absent or null.';

create or replace function internal.trunk_recorder_fields()
returns table (message_type text, field text, kind text, required boolean, ord integer)
language sql
immutable
parallel safe
as $$
    -- The fields of one entry of each message type that are checked and typed (from the
    -- plugin's sources); others are kept as sent. Required: what the state needs.
    select f.message_type, f.field, f.kind, f.required, f.ord::integer
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
$$;

comment on function internal.trunk_recorder_fields() is
'The checked fields of an entry of each Trunk Recorder message type (rates, recorders, calls_active): name, kind (internal.tr_value), whether required, order. Other fields are stored as sent.';

create or replace function internal.trunk_recorder_checked(messages jsonb)
returns table (n bigint, sent jsonb, message jsonb, problem jsonb)
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    with given as (
        select
            m.n,
            m.message,
            m.message ->> 'type' as message_type,
            case m.message ->> 'type'
                when 'rates' then 'rates' when 'recorders' then 'recorders' when 'calls_active' then 'calls'
            end as list_key
        from jsonb_array_elements(messages) with ordinality as m (message, n)
    ),

    headed as (
        -- What is wrong with the message itself, if anything; its timestamp typed.
        select
            g.n,
            g.message,
            g.message_type,
            g.list_key,
            coalesce(ts.typed, g.message -> 'timestamp') as reported,
            case
                when jsonb_typeof(g.message) is distinct from 'object'
                    then jsonb_build_object('field', null, 'message', 'a message must be a JSON object')
                when g.list_key is null
                    then jsonb_build_object('field', 'type', 'message', 'must be rates, recorders or calls_active')
                when inst.problem is not null or inst.missing
                    then jsonb_build_object('field', 'instance_id', 'message', coalesce(inst.problem, 'is required'))
                when ts.problem is not null or ts.missing
                    then jsonb_build_object(
                        'field', 'timestamp',
                        'message', coalesce(ts.problem, 'is required') || ' (seconds since 1970)'
                    )
                -- A clock far ahead would freeze its feed (newer messages only go in). Not
                -- a malformed message: one at odds with the database's clock (a 409).
                when coalesce(ts.typed, g.message -> 'timestamp')::numeric > clock.latest
                    then jsonb_build_object(
                        'field', 'timestamp',
                        'message', 'is ahead of the database''s clock by more than emberlog.traffic_max_clock_ahead (default 10 minutes)',
                        'code', 'clock_ahead'
                    )
                when jsonb_typeof(g.message -> g.list_key) is distinct from 'array'
                    then jsonb_build_object('field', g.list_key, 'message', 'must be an array')
                when jsonb_array_length(g.message -> g.list_key) > 2000
                    then jsonb_build_object('field', g.list_key, 'message', 'may hold at most 2000 entries')
            end as head_problem
        from given as g
        cross join (
            -- Read once for the batch.
            select extract(epoch from now() + internal.interval_setting(
                'emberlog.traffic_max_clock_ahead', '10 minutes'
            )) as latest
        ) as clock
        -- instance_id and timestamp checked as entries' fields are (what the schema says).
        cross join lateral internal.tr_value(
            case when jsonb_typeof(g.message) = 'object' then g.message -> 'instance_id' end, 'name'
        ) as inst
        cross join lateral internal.tr_value(
            case when jsonb_typeof(g.message) = 'object' then g.message -> 'timestamp' end, 'epoch'
        ) as ts
    ),

    entries as (
        select h.n, h.list_key, h.message_type, e.idx, e.entry
        from headed as h
        cross join lateral jsonb_array_elements(
            case when h.head_problem is null then h.message -> h.list_key end
        ) with ordinality as e (entry, idx)
    ),

    field_checks as (
        -- The checked fields of every entry that are wrong or to be typed (a plugin that
        -- sends typed JSON has none), read once each (jsonb_each), and the required ones
        -- that are absent or null.
        select e.n, e.idx, f.ord, f.field, e.list_key, v.problem, v.typed
        from entries as e
        cross join lateral jsonb_each(
            case when jsonb_typeof(e.entry) = 'object' then e.entry end
        ) as kv (key, value)
        inner join internal.trunk_recorder_fields() as f
            on e.message_type = f.message_type and kv.key = f.field
        cross join lateral internal.tr_value(kv.value, f.kind) as v
        where v.problem is not null or v.typed is not null
        union all
        select e.n, e.idx, f.ord, f.field, e.list_key, 'is required', null
        from entries as e
        inner join internal.trunk_recorder_fields() as f
            on e.message_type = f.message_type and f.required
        where
            jsonb_typeof(e.entry) = 'object'
            and coalesce(jsonb_typeof(e.entry -> f.field), 'null') = 'null'
    ),

    checked_fields as (
        select
            c.n,
            c.idx,
            (array_agg(jsonb_build_object(
                'field', c.list_key || '[' || (c.idx - 1) || '].' || c.field, 'message', c.problem
            ) order by c.ord) filter (where c.problem is not null))[1] as problem,
            jsonb_object_agg(c.field, c.typed) filter (where c.typed is not null) as typed
        from field_checks as c
        group by c.n, c.idx
    ),

    checked_entries as (
        -- Each entry: its first problem (in field order), and itself with its checked
        -- fields typed (other fields as sent).
        select
            e.n,
            e.idx,
            case
                when jsonb_typeof(e.entry) <> 'object' then jsonb_build_object(
                    'field', e.list_key || '[' || (e.idx - 1) || ']', 'message', 'must be an object'
                )
                else c.problem
            end as problem,
            case
                when jsonb_typeof(e.entry) = 'object' then e.entry || coalesce(c.typed, '{}')
                else e.entry
            end as entry
        from entries as e
        left join checked_fields as c on e.n = c.n and e.idx = c.idx
    ),

    per_message as (
        select
            c.n,
            (array_agg(c.problem order by c.idx) filter (where c.problem is not null))[1] as problem,
            jsonb_agg(c.entry order by c.idx) as entries
        from checked_entries as c
        group by c.n
    )

    select
        h.n,
        h.message,
        case when coalesce(h.head_problem, p.problem) is null then
            h.message || jsonb_build_object(
                'timestamp', h.reported, h.list_key, coalesce(p.entries, '[]')
            )
        end,
        coalesce(h.head_problem, p.problem)
    from headed as h
    left join per_message as p on h.n = p.n
    order by h.n
$$;

comment on function internal.trunk_recorder_checked(jsonb) is
'Checks a batch (a JSON array) of Trunk Recorder status messages in one query: per message, in order, n, sent (the message as given), the message with its timestamp and its entries'' checked fields typed (internal.tr_value; null when invalid), and problem: null when valid ({type: rates|recorders|calls_active, instance_id, timestamp (epoch seconds), rates|recorders|calls: [entry, ...]}, at most 2000 entries, each entry''s fields as internal.trunk_recorder_fields() says), else {field, message} of the first problem (field e.g. "calls[2].talkgroup"), with code clock_ahead when the timestamp is too far ahead of the database''s clock.';
