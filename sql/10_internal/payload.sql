-- Reading typed values out of a JSON payload, with errors that name the field.

create or replace function internal.payload_text(payload jsonb, field text)
returns text
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
    if jsonb_typeof(payload -> field) not in ('string', 'null') then
        perform internal.invalid_field(field, 'must be a string or null');
    end if;
    return payload ->> field;
end
$$;

comment on function internal.payload_text(jsonb, text) is
'The string at payload->field, null when absent or null; 422 for any other JSON type.';

create or replace function internal.payload_boolean(payload jsonb, field text)
returns boolean
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
    if jsonb_typeof(payload -> field) not in ('boolean', 'null') then
        perform internal.invalid_field(field, 'must be true, false or null');
    end if;
    return (payload -> field)::boolean;
end
$$;

comment on function internal.payload_boolean(jsonb, text) is
'The boolean at payload->field, null when absent or null; 422 for any other JSON type.';

create or replace function internal.payload_text_array(payload jsonb, field text)
returns text[]
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
    if jsonb_typeof(payload -> field) not in ('array', 'null') or exists (
        select from jsonb_array_elements(
            case jsonb_typeof(payload -> field) when 'array' then payload -> field end
        ) as element
        where jsonb_typeof(element) <> 'string'
    ) then
        perform internal.invalid_field(field, 'must be an array of strings or null');
    end if;
    if jsonb_typeof(payload -> field) = 'array' then
        return array(select jsonb_array_elements_text(payload -> field));
    end if;
    return null;
end
$$;

comment on function internal.payload_text_array(jsonb, text) is
'The array of strings at payload->field, null when absent or null; 422 otherwise.';

create or replace function internal.payload_object(payload jsonb, field text)
returns jsonb
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
    if jsonb_typeof(payload -> field) not in ('object', 'null') then
        perform internal.invalid_field(field, 'must be a JSON object or null');
    end if;
    return nullif(payload -> field, 'null'::jsonb);
end
$$;

comment on function internal.payload_object(jsonb, text) is
'The object at payload->field, null when absent or null; 422 for any other JSON type.';

create or replace function internal.payload_timestamp(payload jsonb, field text)
returns timestamptz
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    value text := internal.payload_text(payload, field);
begin
    if value is null then
        return null;
    end if;
    -- ISO 8601 only: PostgreSQL would also accept words such as 'now' or 'epoch'.
    if value !~ '^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|z|[+-]\d{2}(:?\d{2})?)?$' then
        perform internal.invalid_field(field, 'must be an ISO 8601 timestamp, e.g. 2026-11-22T05:04:15Z');
    end if;
    -- Without an offset the session time zone applies (the API sets it from NAIVE_TIMEZONE).
    return value::timestamptz;
exception
    -- e.g. 2026-02-30, or an offset beyond PostgreSQL's 15:59
    when datetime_field_overflow or invalid_datetime_format or invalid_time_zone_displacement_value then
        perform internal.invalid_field(field, 'is not a valid date and time: ' || value);
end
$$;

comment on function internal.payload_timestamp(jsonb, text) is
'The ISO 8601 timestamp at payload->field; a value without an offset is read in the session time zone.';
