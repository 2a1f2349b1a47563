-- A statement_timeout for each web role, unless a DBA already chose one: no request
-- may hold a connection for long. PostgreSQL applies role settings only at login; the
-- app switches roles inside its one login, so it reads these (pg_roles.rolconfig) at
-- every route reload and applies them per request, as PostgREST does.
do $timeouts$
declare
    pair text[];
begin
    foreach pair slice 1 in array array[
        ['emberlog_anon', '5s'], ['emberlog_ingest', '5s'], ['emberlog_reader', '60s']
    ] loop
        if not exists (
            select from pg_catalog.pg_roles as r, unnest(r.rolconfig) as c (setting)
            where r.rolname = pair[1] and c.setting like 'statement\_timeout=%'
        ) then
            execute pg_catalog.format('alter role %I set statement_timeout = %L', pair[1], pair[2]);
        end if;
    end loop;
exception
    when insufficient_privilege then
        raise notice 'no privilege to set the web roles'' statement_timeout; ask a DBA (see README)';
end
$timeouts$;
