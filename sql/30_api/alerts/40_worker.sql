-- The functions `emberlog-api worker` calls (as emberlog_worker; no HTTP route): claim
-- due deliveries, record what each attempt did, keep the system destination in step
-- with NOTIFIER_BASE_URL, and count the queue for its metrics. Retries, backoff and
-- dead letters are decided here, so a killed worker or a second one changes nothing.

create function api.claim_alert_deliveries(
    worker text,
    max_count integer,
    lease_seconds double precision,
    max_attempts integer,
    per_user integer default 8
)
returns table (id uuid, attempt integer, url text, secret text, body text)
language plpgsql
volatile
-- Reads every user's deliveries and channel secrets: for the worker role only.
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    -- Leases that ran out: the worker that claimed them stopped before recording a
    -- result (killed, or cut off from the database). Due again, or dead when that was
    -- the last attempt allowed (a delivery that kills every worker must not loop).
    with lost as (
        select d.id from data.alert_deliveries as d
        where d.status = 'sending' and d.lease_expires_at < now()
        order by d.lease_expires_at
        limit max_count
        for update skip locked
    )
    update data.alert_deliveries as d
    set status = case
            when d.kind <> 'system' and d.channel_id is null then 'cancelled'
            when d.attempts >= max_attempts then 'dead'
            else 'retrying'
        end,
        next_attempt_at = case
            when (d.kind = 'system' or d.channel_id is not null) and d.attempts < max_attempts
                then now()
        end,
        last_error = 'no result recorded: the worker ' || coalesce(d.claimed_by, '?')
            || ' stopped during the attempt (its lease ran out)',
        claimed_by = null, lease_expires_at = null, updated_at = now()
    from lost
    where d.id = lost.id;

    -- A rule's or a test's delivery whose channel was deleted (in psql, say, without the
    -- routes' cancelling): nowhere to send it.
    update data.alert_deliveries as d
    set status = 'cancelled', next_attempt_at = null, last_error = 'the channel was deleted',
        updated_at = now()
    where d.status in ('queued', 'retrying') and d.next_attempt_at <= now()
        and d.kind <> 'system' and d.channel_id is null;

    return query
    -- Fair to every user: at most per_user of one user's deliveries in flight at once
    -- (over all workers), so one user's many or slow receivers hold that many slots and
    -- no more. Each user with something due gets their own look (their earliest due, up
    -- to what their cap leaves), so another's backlog, however long, is never in front
    -- of theirs; then the earliest of all those. System deliveries (no user: 0 here) are
    -- not capped.
    with busy as (
        select coalesce(s.user_id, 0) as uid, count(*) as sending
        from data.alert_deliveries as s
        where s.status = 'sending'
        group by coalesce(s.user_id, 0)
    ),
    waiting as (
        select distinct coalesce(d.user_id, 0) as uid
        from data.alert_deliveries as d
        where d.status in ('queued', 'retrying') and d.next_attempt_at <= now()
    ),
    picked as (
        select p.id, p.next_attempt_at
        from waiting as w
        left join busy as b on w.uid = b.uid
        cross join lateral (
            select d.id, d.next_attempt_at
            from data.alert_deliveries as d
            where coalesce(d.user_id, 0) = w.uid
                and d.status in ('queued', 'retrying') and d.next_attempt_at <= now()
            order by d.next_attempt_at
            limit case
                when w.uid = 0 then max_count
                else least(max_count, greatest(per_user - coalesce(b.sending, 0), 0))
            end
            for update skip locked
        ) as p
    ),
    due as (
        select pk.id from picked as pk
        order by pk.next_attempt_at
        limit max_count
    ),
    claimed as (
        update data.alert_deliveries as d
        set status = 'sending',
            attempts = d.attempts + 1,
            claimed_by = worker,
            lease_expires_at = now() + make_interval(secs => lease_seconds),
            last_attempt_at = now(),
            next_attempt_at = null,
            updated_at = now()
        from due
        where d.id = due.id
        returning d.*
    )
    select
        c.id,
        c.attempts,
        coalesce(c.url, ch.url),
        coalesce(ch.secret, sd.secret),
        (api.event_json(jsonb_populate_record(null::api.events, m.envelope))::jsonb
        || jsonb_build_object('alert', jsonb_build_object(
            'delivery_id', c.id,
            'kind', c.kind,
            'rule', case when c.rule_name is not null then jsonb_build_object(
                'id', c.rule_id, 'name', c.rule_name
            ) end,
            'channel_id', c.channel_id
        )))::text
    from claimed as c
    inner join data.alert_messages as m on c.message_id = m.id
    left join data.alert_channels as ch on c.channel_id = ch.id
    left join data.alert_system_destinations as sd on c.destination = sd.name;
end
$$;

comment on function api.claim_alert_deliveries(text, integer, double precision, integer, integer) is
'For emberlog-api worker: claim up to max_count due deliveries (for update skip locked: two workers never claim the same one) for lease_seconds, counting the attempt, at most per_user of one user''s in flight over all workers (system deliveries are no user''s); first, deliveries whose lease ran out are due again (or dead after max_attempts), and those whose channel is gone are cancelled. Returns each one''s id (the webhook-id), attempt, URL, signing secret (null: unsigned) and body: the canonical envelope plus "alert" {delivery_id, kind, rule {id, name}, channel_id}, the same bytes on every attempt.';

create function api.finish_alert_deliveries(
    results jsonb,
    max_attempts integer,
    backoff_seconds double precision,
    max_backoff_seconds double precision
)
returns table (
    id uuid, status text, attempts integer, latency_seconds double precision,
    due_in_seconds double precision
)
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    return query
    with result as (
        select r.*
        from jsonb_to_recordset(results) as r (
            id uuid, attempt integer, ok boolean, status_code integer, error text,
            permanent boolean
        )
    ),
    finished as (
        update data.alert_deliveries as d
        set status = case
                when r.ok then 'delivered'
                -- its channel was deleted during the attempt: nowhere to try again
                when d.kind <> 'system' and d.channel_id is null then 'cancelled'
                when coalesce(r.permanent, false) or d.attempts >= max_attempts then 'dead'
                else 'retrying'
            end,
            next_attempt_at = case
                when not r.ok and not coalesce(r.permanent, false) and d.attempts < max_attempts
                    and (d.kind = 'system' or d.channel_id is not null)
                    then now() + internal.alert_backoff(d.attempts, backoff_seconds, max_backoff_seconds)
            end,
            delivered_at = case when r.ok then now() end,
            last_status_code = r.status_code,
            last_error = case when not r.ok then left(coalesce(r.error, 'failed'), 1000) end,
            claimed_by = null,
            lease_expires_at = null,
            updated_at = now()
        from result as r
        -- Only the attempt this worker claimed: when its lease ran out and another
        -- worker claimed the delivery again, this result is too late and changes nothing.
        where d.id = r.id and d.status = 'sending' and d.attempts = r.attempt
        returning d.id, d.status, d.attempts, d.kind, d.channel_id, d.created_at,
            d.next_attempt_at, d.last_attempt_at
    ),
    verified as (
        -- only the URL the test was sent to: not one changed while it was on its way
        update data.alert_channels as c
        set verified_at = now()
        from finished as f
        where f.kind = 'test' and f.status = 'delivered' and c.id = f.channel_id
            and c.updated_at <= f.last_attempt_at
    )
    select f.id, f.status, f.attempts,
        extract(epoch from clock_timestamp() - f.created_at)::double precision,
        extract(epoch from f.next_attempt_at - now())::double precision
    from finished as f;
end
$$;

comment on function api.finish_alert_deliveries(jsonb, integer, double precision, double precision) is
'For emberlog-api worker: record attempts, results = [{id, attempt, ok, status_code, error, permanent}]. ok: delivered (a test delivery verifies its channel); else cancelled when its channel was deleted meanwhile, dead when permanent (a refused destination) or after max_attempts, otherwise retrying after internal.alert_backoff. A result for an attempt that is no longer the current one (its lease ran out) changes nothing. Returns each recorded delivery''s new status, attempts, age and, when retrying, in how many seconds it is due (the worker wakes then).';

create function api.set_alert_notifier(base_url text, secret text default null)
returns text
language plpgsql
volatile
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    url text := rtrim(base_url, '/') || '/api/v1/events/new_incident';
begin
    if nullif(base_url, '') is null then
        -- What was queued for it is not sent anywhere now: cancelled, visibly.
        update data.alert_deliveries as q
        set status = 'cancelled', next_attempt_at = null, updated_at = now(),
            last_error = 'the system destination was removed'
        where q.destination = 'notifier' and q.status in ('queued', 'retrying');
        delete from data.alert_system_destinations as d where d.name = 'notifier';
        return null;
    end if;
    insert into data.alert_system_destinations as d (name, url, secret)
    values ('notifier', url, nullif(secret, ''))
    on conflict (name) do update set url = excluded.url, secret = excluded.secret, updated_at = now()
    where (d.url, d.secret) is distinct from (excluded.url, excluded.secret);
    return url;
end
$$;

comment on function api.set_alert_notifier(text, text) is
'For emberlog-api worker (NOTIFIER_BASE_URL, NOTIFIER_SECRET) and DBAs: every incident is then also delivered to {base_url}/api/v1/events/new_incident (upstream''s notifier); null or empty: no longer (what was queued for it is cancelled). Returns the URL in force.';

create function api.alert_queue()
returns table (status text, deliveries bigint, oldest_due_seconds double precision)
language sql
stable
security definer
set search_path = pg_catalog, pg_temp
as $$
    -- Each part reads one of the partial indexes (due, leases), never the whole table.
    select d.status, count(*),
        max(extract(epoch from now() - d.next_attempt_at))::double precision
    from data.alert_deliveries as d
    where d.status in ('queued', 'retrying')
    group by d.status
    union all
    select 'sending', count(*), null::double precision
    from data.alert_deliveries as d
    where d.status = 'sending'
    having count(*) > 0
$$;

comment on function api.alert_queue() is
'For emberlog-api worker''s metrics: deliveries waiting (queued, retrying) or in flight (sending), and how overdue the oldest due one is.';
