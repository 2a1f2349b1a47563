-- The trigger on data.alert_rules: what matching compares, kept from what the user wrote
-- (internal.tg_<table>__<task>, security definer, search_path pinned). Edit here and run
-- `make migrate`.

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

create or replace trigger _100_match_columns
before insert or update of incident_types, units, channels, address, keywords
on data.alert_rules
for each row execute function internal.tg_alert_rules__match_columns();

comment on trigger _100_match_columns on data.alert_rules is
'Keeps the columns matching compares in step with the filters.';
