-- Settings SQL reads (DB_SETTINGS, or alter database ... set emberlog.x = ...): each
-- read through one of these, so a wrong value is named in a 503 instead of failing
-- as a cast deep inside whatever read it. The traffic monitor's (its clocks, rates,
-- retention) and the log's retention (internal.prune_events, internal.prune_alerts).

create or replace function internal.checked_setting(name text, fallback text, valid boolean)
returns text
language plpgsql
stable
set search_path = pg_catalog, pg_temp
as $$
begin
    -- A wrong setting is the deployment's fault, not a request's or a message's: a 503
    -- (the bridge waits and retries, acknowledging nothing), never a message refused
    -- or dropped.
    if not valid then
        raise sqlstate 'PT503' using
            message = checked_setting.name || ' is '
            || quote_literal(current_setting(checked_setting.name, true))
            || ', not a valid value: set it right (DB_SETTINGS, or alter database ... set)',
            hint = 'misconfigured';
    end if;
    return coalesce(nullif(current_setting(checked_setting.name, true), ''), fallback);
end
$$;

comment on function internal.checked_setting(text, text, boolean) is
'A setting as text (fallback when unset); valid says whether it casts to its type (the callers: internal.interval_setting, internal.number_setting), else a 503 naming it.';

create or replace function internal.interval_setting(name text, fallback text)
returns interval
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    -- (pg_input_is_valid caches the type it was first given at a call site: one type
    -- per function.)
    select internal.checked_setting(
        name, fallback,
        pg_input_is_valid(coalesce(nullif(current_setting(name, true), ''), fallback), 'interval')
    )::interval
$$;

comment on function internal.interval_setting(text, text) is
'An interval setting (emberlog.decode_history_retention, emberlog.traffic_max_clock_ahead, emberlog.traffic_clock_reset, emberlog.event_retention, emberlog.alert_retention): fallback when unset, a 503 naming it when not an interval.';

create or replace function internal.number_setting(name text, fallback text)
returns double precision
language sql
stable
set search_path = pg_catalog, pg_temp
as $$
    select internal.checked_setting(
        name, fallback,
        pg_input_is_valid(coalesce(nullif(current_setting(name, true), ''), fallback), 'double precision')
    )::double precision
$$;

comment on function internal.number_setting(text, text) is
'A number setting (emberlog.max_decoderate): fallback when unset, a 503 naming it when not a number.';

-- Their names before they served more than the traffic monitor.
drop function if exists internal.traffic_interval(text, text);
drop function if exists internal.traffic_number(text, text);
drop function if exists internal.traffic_setting(text, text, boolean);
