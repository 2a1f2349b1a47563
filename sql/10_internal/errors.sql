-- Raising errors the API maps to HTTP statuses (SQLSTATE PTxyz -> HTTP xyz).

create or replace function internal.invalid_field(field text, problem text)
returns void
language plpgsql
immutable
set search_path = pg_catalog, pg_temp
as $$
begin
    raise sqlstate 'PT422' using
        message = field || ' ' || problem,
        detail = json_build_object('field', field)::text,
        hint = 'validation_failed';
end
$$;

comment on function internal.invalid_field(text, text) is
'Raises a 422 naming the field, e.g. internal.invalid_field(''units'', ''must be an array of strings'').';
