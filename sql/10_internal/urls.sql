-- URLs in responses: relative to the request's base URL, and derived from the routes
-- the api functions declare (their @http tags), so a path is written once.

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

create or replace function internal.route_path(route regprocedure)
returns text
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
declare
    -- The first "@http METHOD /path" line of the function's comment, as the app reads it.
    path text := substring(
        obj_description(route_path.route, 'pg_proc')
        from '(?n)^\s*@http\s+[A-Z]+\s+(/\S*)\s*$'
    );
begin
    if path is null then
        raise exception '% declares no @http route', route_path.route
        using hint = 'add a line "@http METHOD /path" to its comment';
    end if;
    return path;
end
$$;

comment on function internal.route_path(regprocedure) is
'The path template (e.g. /api/v1/incidents/{id}) a function declares in its @http tag: a response links to a route without writing its path again. Raises when the function declares none.';
