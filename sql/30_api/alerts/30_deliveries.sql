-- Alert deliveries: what matching queued for the caller and what became of it.

create function api.list_alert_deliveries(
    status text default null,
    rule_id bigint default null,
    channel_id bigint default null,
    "limit" integer default 50,
    "offset" integer default 0
)
returns jsonb
language plpgsql
stable
as $$
declare
    items jsonb;
begin
    perform internal.alert_subject_required();
    if "limit" is null or "limit" not between 1 and 500 then
        raise sqlstate 'PT400' using message = 'limit must be between 1 and 500',
            detail = '{"field": "limit"}', hint = 'invalid_parameter';
    end if;
    if list_alert_deliveries.status not in (
        'queued', 'sending', 'retrying', 'delivered', 'dead', 'throttled', 'cancelled'
    ) then
        raise sqlstate 'PT400' using
            message = 'status must be one of queued, sending, retrying, delivered, dead,'
                || ' throttled, cancelled',
            detail = '{"field": "status"}', hint = 'invalid_parameter';
    end if;
    if "offset" is null or "offset" not between 0 and 100000 then
        raise sqlstate 'PT400' using message = 'offset must be between 0 and 100000',
            detail = '{"field": "offset"}', hint = 'invalid_parameter';
    end if;
    select coalesce(jsonb_agg(api.alert_delivery_json(p) order by p.created_at desc, p.id), '[]')
    into items
    from (
        select d.* from api.alert_deliveries as d
        where (list_alert_deliveries.status is null or d.status = list_alert_deliveries.status)
            and (list_alert_deliveries.rule_id is null or d.rule_id = list_alert_deliveries.rule_id)
            and (list_alert_deliveries.channel_id is null or d.channel_id = list_alert_deliveries.channel_id)
        order by d.created_at desc, d.id
        limit "limit" offset "offset"
    ) as p;
    return jsonb_build_object(
        'data', items,
        'pagination', jsonb_build_object('limit', "limit", 'offset', "offset")
    );
end
$$;

comment on function api.list_alert_deliveries(text, bigint, bigint, integer, integer) is
E'@http GET /api/v1/alert-deliveries\n'
'@param status {"enum": ["queued", "sending", "retrying", "delivered", "dead", "throttled", "cancelled"]}\n'
'@param limit {"minimum": 1, "maximum": 500}\n'
'@param offset {"minimum": 0, "maximum": 100000}\n'
'The caller''s deliveries, newest first, filtered by status, rule_id, channel_id: status, attempts, last HTTP status and error, next attempt.';

create function api.get_alert_delivery(id uuid)
returns jsonb
language plpgsql
stable
as $$
declare
    shown jsonb;
begin
    select api.alert_delivery_json(d) into shown from api.alert_deliveries as d
    where d.id = get_alert_delivery.id;
    if shown is null then
        perform api.alert_not_found('alert delivery', id::text);
    end if;
    return shown;
end
$$;

comment on function api.get_alert_delivery(uuid) is
E'@http GET /api/v1/alert-deliveries/{id}\nOne of the caller''s deliveries; 404 when it is not theirs.';

create function api.retry_alert_delivery(id uuid)
returns jsonb
language plpgsql
volatile
as $$
begin
    perform internal.retry_alert_delivery(id);
    perform set_config('response.status', '202', true);
    return api.get_alert_delivery(id);
end
$$;

comment on function api.retry_alert_delivery(uuid) is
E'@http POST /api/v1/alert-deliveries/{id}/retry\n'
'Sends a dead delivery again (its attempts start over; same id, so the receiver can tell it is the same alert): 202 with the delivery; 409 not_dead for any other status.';
