-- Issuing, revoking and checking API keys. A DBA calls the first two from psql
-- (or `emberlog-api keys ...`); the API calls auth.key_role and auth.touch_api_keys.
--
-- A key's role must be one the authenticator (emberlog_authenticator, the API's
-- login) may switch to: a web role, not a superuser, a login or a predefined pg_*
-- role (pg_read_all_data, pg_execute_server_program...). The API checks again on
-- every use, since memberships change after a key is issued.

create or replace function auth.create_api_key(
    name text,
    role name,
    expires_at timestamptz default null
)
returns text
language plpgsql
volatile
set search_path = pg_catalog, pg_temp
as $$
declare
    new_key text := 'emb_' || replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
    -- The roles a key may run as, named in every refusal so the DBA knows what to pick.
    allowed text := coalesce((
        select pg_catalog.string_agg(r.rolname::text, ', ' order by r.rolname)
        from pg_catalog.pg_roles as r
        where
            pg_catalog.pg_has_role('emberlog_authenticator', r.oid, 'member')
            and not (r.rolsuper or r.rolcanlogin)
            and not pg_catalog.starts_with(r.rolname::text, 'pg_')
    ), 'none');
    refusal text;
begin
    if not exists (select from pg_catalog.pg_roles as r where r.rolname = create_api_key.role) then
        refusal := 'role ' || create_api_key.role || ' does not exist';
    elsif pg_catalog.starts_with(create_api_key.role::text, 'pg_') then
        refusal := 'an API key may not run as a predefined pg_ role';
    elsif exists (
        select from pg_catalog.pg_roles as r
        where r.rolname = create_api_key.role and (r.rolsuper or r.rolcanlogin)
    ) then
        refusal := 'an API key may not run as a superuser or a login role';
    elsif not pg_catalog.pg_has_role('emberlog_authenticator', create_api_key.role, 'member') then
        refusal := 'the authenticator (emberlog_authenticator) may not switch to role '
            || create_api_key.role;
    end if;
    if refusal is not null then
        raise sqlstate 'PT422' using
            message = refusal || '; an API key may run as: ' || allowed,
            detail = '{"field": "role"}',
            hint = 'validation_failed';
    end if;
    insert into auth.api_keys (name, role, key_hash, key_prefix, expires_at)
    values (
        create_api_key.name,
        create_api_key.role,
        sha256(convert_to(new_key, 'UTF8')),
        left(new_key, 12),
        create_api_key.expires_at
    );
    return new_key;
end
$$;

comment on function auth.create_api_key(text, name, timestamptz) is
'Issue a key that runs requests as role (optionally until expires_at). role must be one emberlog_authenticator may switch to (a member of), not a superuser, a login or a pg_ role. Returns the key: it is not stored and cannot be shown again.';

create or replace function auth.revoke_api_key(name text)
returns boolean
language sql
volatile
set search_path = pg_catalog, pg_temp
as $$
    update auth.api_keys as k set revoked_at = now()
    where k.name = revoke_api_key.name and k.revoked_at is null
    returning true
$$;

comment on function auth.revoke_api_key(text) is
'Revoke a key by name; true if it was active. Running servers refuse it within API_KEY_CACHE_SECONDS.';

create or replace function auth.key_role(key_hash bytea)
returns table (key_id bigint, key_name text, role name, expires_at timestamptz)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
    select k.id, k.name, k.role, k.expires_at
    from auth.api_keys as k
    where k.key_hash = key_role.key_hash
        and k.revoked_at is null
        and (k.expires_at is null or k.expires_at > now())
$$;

comment on function auth.key_role(bytea) is
'The role of an active key, by the sha256 of the key; no row for an unknown, revoked or expired key.';

create or replace function auth.touch_api_keys(key_ids bigint[], used_at timestamptz[])
returns void
language sql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
    -- least(): a time in the future is recorded as now, so the caller cannot date a
    -- use ahead; greatest(): a late batch never moves last_used_at back.
    update auth.api_keys as k
    set last_used_at = greatest(k.last_used_at, least(u.used_at, now()))
    from unnest(touch_api_keys.key_ids, touch_api_keys.used_at) as u (key_id, used_at)
    where k.id = u.key_id and u.used_at is not null
$$;

comment on function auth.touch_api_keys(bigint[], timestamptz[]) is
'Record when keys were last used (the API calls it in batches, off the request path). A time after now() is recorded as now(); last_used_at never moves back.';
