create or replace function internal.absolute_url(path text)
returns text
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    select coalesce(current_setting('request.base_url', true), '') || path
$$;

comment on function internal.absolute_url(text) is
'path made absolute with the request''s base URL (set by the API as request.base_url); relative for SQL callers.';
