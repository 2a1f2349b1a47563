-- The triggers on the alert tables (internal.tg_<table>__<task>, security definer,
-- search_path pinned). Edit here and run `make migrate`. In the order an incident's
-- writer locks these tables (its matching reads data.alert_rules, then
-- data.alert_rule_channels; its deliveries' foreign keys lock data.alert_channels), so
-- that a deploy replacing them cannot deadlock with it.

create or replace function internal.tg_alert_rules__match_columns()
returns trigger
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    new.match_incident_types := internal.lowered(new.incident_types);
    new.match_units := internal.lowered(new.units);
    new.match_channels := internal.lowered(new.channels);
    new.match_address := lower(new.address);
    new.keywords_query := case
        when new.keywords is not null then websearch_to_tsquery('english', new.keywords)
    end;
    return new;
end
$$;

comment on function internal.tg_alert_rules__match_columns() is
'Row trigger on data.alert_rules: match_* are the filters lowercased (each once), keywords_query the keywords as websearch_to_tsquery(''english'', ...), whoever writes the row.';

create or replace function internal.tg_alert_tables__limit()
returns trigger
language plpgsql
volatile
-- Counts all of the user's rows (row-level security would hide none, but the count must
-- not depend on who asks) and locks their data.alert_users row.
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    limits record;
    most integer;
    have bigint;
    what text;
begin
    -- One user's inserts in turn: two at once cannot both pass the limit.
    perform from data.alert_users as u where u.id = new.user_id for update;
    select * into limits from internal.alert_limits();
    if tg_table_name = 'alert_channels' then
        select count(*) into have from data.alert_channels as c where c.user_id = new.user_id;
        most := limits.channels;
        what := 'alert channels';
    elsif tg_table_name = 'alert_rules' then
        select count(*) into have from data.alert_rules as r where r.user_id = new.user_id;
        most := limits.rules;
        what := 'alert rules';
    else
        select count(*) into have from data.alert_rule_channels as rc
        where rc.user_id = new.user_id;
        most := limits.rule_channels;
        what := 'channels over all their rules (a rule notifying 3 channels counts 3)';
    end if;
    if have >= most then
        raise sqlstate 'PT409' using
            message = 'a user may have at most ' || most || ' ' || what,
            detail = json_build_object('limit', most)::text,
            hint = 'limit_reached';
    end if;
    return new;
end
$$;

comment on function internal.tg_alert_tables__limit() is
'Row trigger before an insert into data.alert_channels, data.alert_rules or data.alert_rule_channels: 409 limit_reached beyond internal.alert_limits() for the row''s user, whoever inserts (a route, or psql directly); the user''s row is locked first, so concurrent inserts are counted in turn.';

create or replace trigger _100_match_columns
before insert or update of incident_types, units, channels, address, keywords
on data.alert_rules
for each row execute function internal.tg_alert_rules__match_columns();

comment on trigger _100_match_columns on data.alert_rules is
'Keeps the columns matching compares in step with the filters.';

create or replace trigger _100_limit
before insert on data.alert_rules
for each row execute function internal.tg_alert_tables__limit();

comment on trigger _100_limit on data.alert_rules is 'At most internal.alert_limits() rules per user.';

create or replace trigger _100_limit
before insert on data.alert_rule_channels
for each row execute function internal.tg_alert_tables__limit();

comment on trigger _100_limit on data.alert_rule_channels is
'At most internal.alert_limits() (rule, channel) pairs per user.';

create or replace function internal.tg_alert_channels__unverify()
returns trigger
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    if new.url is distinct from old.url then
        new.verified_at := null;  -- a new URL is verified by a test of its own
    end if;
    new.updated_at := now();
    return new;
end
$$;

comment on function internal.tg_alert_channels__unverify() is
'Row trigger on data.alert_channels: a changed URL is no longer verified; updated_at is the time of the change.';

create or replace trigger _100_limit
before insert on data.alert_channels
for each row execute function internal.tg_alert_tables__limit();

comment on trigger _100_limit on data.alert_channels is 'At most internal.alert_limits() channels per user.';

create or replace trigger _100_unverify
before update on data.alert_channels
for each row execute function internal.tg_alert_channels__unverify();

comment on trigger _100_unverify on data.alert_channels is
'A channel whose URL changes is unverified until a test reaches the new one.';
