-- Cluster-wide roles the API needs. Created only when missing, so a DBA on a
-- managed cluster can create them once by hand (see README) and this
-- migration then changes nothing.
do $roles$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'emberlog_authenticator') then
        create role emberlog_authenticator login noinherit;
    end if;
    if not exists (select from pg_catalog.pg_roles where rolname = 'emberlog_anon') then
        create role emberlog_anon nologin;
    end if;
    if not exists (select from pg_catalog.pg_roles where rolname = 'emberlog_ingest') then
        create role emberlog_ingest nologin;
    end if;
    if not exists (select from pg_catalog.pg_roles where rolname = 'emberlog_reader') then
        create role emberlog_reader nologin;
    end if;
end
$roles$;

-- The authenticator may switch to the web roles (set local role), and only to them.
do $members$
declare
    web_role text;
begin
    foreach web_role in array array['emberlog_anon', 'emberlog_ingest'] loop
        if not pg_catalog.pg_has_role('emberlog_authenticator', web_role, 'member') then
            execute pg_catalog.format('grant %I to emberlog_authenticator', web_role);
        end if;
    end loop;
end
$members$;
