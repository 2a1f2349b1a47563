-- depends: 0003.events

-- API keys for services (the ingest service first). Only a hash of each key is kept.

create schema if not exists auth;
comment on schema auth is 'Credentials: API keys (hashed). No web role has any privilege here; the authenticator may only call auth.key_role and auth.touch_api_keys.';
revoke all on schema auth from public;

create table auth.api_keys (
    id bigint generated always as identity primary key,
    name text not null unique,  -- noqa: RF04
    role name not null,  -- noqa: RF04
    key_hash bytea not null unique,
    key_prefix text not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    last_used_at timestamptz,
    constraint api_keys_name_not_empty check (name <> '')
);

comment on table auth.api_keys is 'One API key per row, stored as its SHA-256 digest. Issue with auth.create_api_key, revoke with auth.revoke_api_key.';
comment on column auth.api_keys.role is 'Role a request with this key runs as (the authenticator must be a member of it).';
comment on column auth.api_keys.key_hash is 'sha256 of the key; the key itself is shown once, when created.';
comment on column auth.api_keys.key_prefix is 'First characters of the key, to tell keys apart in listings and logs.';
comment on column auth.api_keys.last_used_at is 'Last request with this key, recorded in batches by the API (may lag by a minute).';
