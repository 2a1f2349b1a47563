alter role emberlog_anon reset statement_timeout;
alter role emberlog_ingest reset statement_timeout;
alter role emberlog_reader reset statement_timeout;
