drop table auth.api_keys;
drop schema auth;
