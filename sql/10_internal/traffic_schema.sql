-- Trunk Recorder's status messages as JSON Schema, built from the same field table and
-- string patterns the checks use (sql/10_internal/traffic_messages.sql), so that the
-- OpenAPI document of POST /api/v1/ingest/trunk-recorder (its @body, written by
-- sql/30_api/traffic_routes.sql) says exactly what the checks do.

create or replace function internal.tr_schema(kind text, required boolean)
returns jsonb
language sql
immutable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
    -- What internal.tr_value accepts, as JSON Schema (for the route's OpenAPI document).
    select jsonb_build_object('anyOf', to_jsonb(array_remove(array[
        case kind
            when 'integer' then '{"type": "integer", "minimum": -2147483648, "maximum": 2147483647}'::jsonb
            when 'number' then '{"type": "number", "exclusiveMinimum": -1e15, "exclusiveMaximum": 1e15}'
            when 'epoch' then '{"type": "number", "minimum": 0, "maximum": 32503680000}'
            when 'flag' then '{"type": "boolean"}'
            when 'name' then '{"type": "string", "minLength": 1, "maxLength": 200}'
            when 'id' then '{"type": "string", "minLength": 1, "maxLength": 200}'
            when 'text' then '{"type": "string", "maxLength": 500}'
        end,
        case
            when kind = 'flag' then '{"enum": [0, 1]}'::jsonb
            when kind = 'id' then '{"type": "integer", "exclusiveMinimum": -1e15, "exclusiveMaximum": 1e15}'
            when kind = 'text' then '{"type": "number", "exclusiveMinimum": -1e15, "exclusiveMaximum": 1e15}'
        end,
        case when internal.tr_pattern(kind) is not null then
            jsonb_build_object('type', 'string', 'pattern', internal.tr_pattern(kind))
        end,
        case when not required then '{"type": "null"}'::jsonb end
    ], null)))
$$;

comment on function internal.tr_schema(text, boolean) is
'The JSON Schema of a value of this kind (what internal.tr_value accepts), null allowed unless required: built into the @body of api.ingest_trunk_recorder, so the OpenAPI document says what the checks do.';

create or replace function internal.trunk_recorder_schema()
returns jsonb
language sql
immutable
parallel safe
set search_path = pg_catalog, pg_temp
as $$
    select jsonb_build_object(
        'type', 'object',
        'required', jsonb_build_array('type', 'instance_id', 'timestamp'),
        'properties', jsonb_build_object(
            'type', jsonb_build_object('enum', jsonb_build_array('rates', 'recorders', 'calls_active')),
            'instance_id', internal.tr_schema('name', true)
            || '{"description": "Trunk Recorder''s instance_id (default trunk-recorder)"}',
            'timestamp', internal.tr_schema('epoch', true) || '{"description": "Seconds since 1970"}'
        ),
        'allOf', (
            select jsonb_agg(jsonb_build_object(
                'if', jsonb_build_object(
                    'properties', jsonb_build_object('type', jsonb_build_object('const', t.message_type))
                ),
                'then', jsonb_build_object(
                    'required', jsonb_build_array(t.list_key),
                    'properties', jsonb_build_object(t.list_key, jsonb_build_object(
                        'type', 'array',
                        'maxItems', 2000,
                        'items', jsonb_build_object(
                            'type', 'object',
                            'required', (
                                select coalesce(jsonb_agg(f.field order by f.ord), '[]')
                                from internal.trunk_recorder_fields() as f
                                where f.message_type = t.message_type and f.required
                            ),
                            'properties', (
                                select jsonb_object_agg(f.field, internal.tr_schema(f.kind, f.required))
                                from internal.trunk_recorder_fields() as f
                                where f.message_type = t.message_type
                            )
                        )
                    ))
                )
            ) order by t.message_type)
            from (values ('rates', 'rates'), ('recorders', 'recorders'), ('calls_active', 'calls'))
                as t (message_type, list_key)
        )
    )
$$;

comment on function internal.trunk_recorder_schema() is
'A Trunk Recorder status message as JSON Schema, from internal.trunk_recorder_fields() and internal.tr_schema: the @body of POST /api/v1/ingest/trunk-recorder.';
