-- The api schema is the public contract. Every deploy drops it and re-creates it
-- from the files under sql/, in sorted path order, in one transaction.
drop schema if exists api cascade;

create schema api;

comment on schema api is 'The Emberlog contract: views for psql users, functions the HTTP routes call.';
