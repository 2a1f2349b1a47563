-- Alert channels: a user's webhook destinations (row-level security: the caller's own).

create function api.alert_channel_values(payload jsonb, creating boolean)
returns table (name text, url text)
language plpgsql
immutable
as $$
begin
    perform api.alert_check_fields(payload, array['name', 'url', 'kind']);
    if coalesce(internal.payload_text(payload, 'kind'), 'webhook') <> 'webhook' then
        perform internal.invalid_field('kind', 'must be webhook');
    end if;
    name := internal.payload_text(payload, 'name');
    url := internal.payload_text(payload, 'url');
    if (creating or payload ? 'name') and (name is null or length(name) not between 1 and 200) then
        perform internal.invalid_field('name', 'must be 1 to 200 characters');
    end if;
    if (creating or payload ? 'url') and (
        url is null or length(url) > 2000 or url !~ internal.alert_url_pattern()
        or coalesce(substring(url from '^[^/]*//[^/:]*:([0-9]+)')::integer, 1) not between 1 and 65535
    ) then
        perform internal.invalid_field(
            'url', 'must be an http or https URL of at most 2000 printable ASCII characters'
            || ' (a host name or IPv4 address, an optional port; no credentials, no spaces)'
        );
    end if;
    return next;
end
$$;

comment on function api.alert_channel_values(jsonb, boolean) is
'A channel body''s name and url, checked (both required when creating); 422 naming the field.';

create function api.list_alert_channels()
returns jsonb
language plpgsql
stable
as $$
begin
    perform internal.alert_subject_required();
    return (
        select jsonb_build_object('data', coalesce(jsonb_agg(api.alert_channel_json(c) order by c.id), '[]'))
        from api.alert_channels as c
    );
end
$$;

comment on function api.list_alert_channels() is
E'@http GET /api/v1/alert-channels\nThe caller''s webhook channels (a token with a sub is required).';

create function api.get_alert_channel(id bigint)
returns jsonb
language plpgsql
stable
as $$
declare
    shown jsonb;
begin
    select api.alert_channel_json(c) into shown from api.alert_channels as c
    where c.id = get_alert_channel.id;
    if shown is null then
        perform api.alert_not_found('alert channel', id::text);
    end if;
    return shown;
end
$$;

comment on function api.get_alert_channel(bigint) is
E'@http GET /api/v1/alert-channels/{id}\nOne of the caller''s channels; 404 when it is not theirs.';

create function api.create_alert_channel(payload jsonb)
returns jsonb
language plpgsql
volatile
as $$
declare
    given record;
    made record;
    url text;
begin
    select * into given from api.alert_channel_values(payload, true);
    select * into made from internal.new_alert_channel(given.name, given.url);
    url := internal.absolute_url(replace(
        internal.route_path('api.get_alert_channel(bigint)'), '{id}', made.id::text
    ));
    perform set_config('response.status', '201', true);
    perform set_config('response.headers', json_build_object('Location', url)::text, true);
    return api.get_alert_channel(made.id) || jsonb_build_object('secret', made.secret);
end
$$;

comment on function api.create_alert_channel(jsonb) is
E'@http POST /api/v1/alert-channels\n'
'@body {"type": "object", "required": ["name", "url"], "additionalProperties": false, "properties": {'
'"name": {"type": "string", "minLength": 1, "maxLength": 200}, '
'"url": {"type": "string", "maxLength": 2000, "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[!-~]*)?$", "description": "where the webhooks are POSTed"}, '
'"kind": {"enum": ["webhook"]}}}\n'
'Creates a webhook channel. 201 with the channel and its signing secret (whsec_...: shown this once, store it now; the receiver verifies each delivery with it). At most 20 per user.';

create function api.update_alert_channel(id bigint, payload jsonb)
returns jsonb
language plpgsql
volatile
as $$
declare
    given record;
    shown jsonb;
begin
    select * into given from api.alert_channel_values(payload, false);
    -- (a new URL is unverified again, and updated_at set: internal.tg_alert_channels__unverify)
    update data.alert_channels as c
    set name = coalesce(given.name, c.name), url = coalesce(given.url, c.url)
    where c.id = update_alert_channel.id;
    if not found then
        perform api.alert_not_found('alert channel', id::text);
    end if;
    select api.alert_channel_json(c) into shown from api.alert_channels as c
    where c.id = update_alert_channel.id;
    return shown;
end
$$;

comment on function api.update_alert_channel(bigint, jsonb) is
E'@http PATCH /api/v1/alert-channels/{id}\n'
'@body {"type": "object", "additionalProperties": false, "properties": {'
'"name": {"type": "string", "minLength": 1, "maxLength": 200}, '
'"url": {"type": "string", "maxLength": 2000, "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[!-~]*)?$"}, '
'"kind": {"enum": ["webhook"]}}}\n'
'Renames a channel or changes its URL (a new URL is unverified until a test succeeds). The secret stays.';

create function api.delete_alert_channel(id bigint)
returns jsonb
language plpgsql
volatile
as $$
declare
    rules text;
begin
    perform from data.alert_channels as c where c.id = delete_alert_channel.id for update;
    if not found then
        perform api.alert_not_found('alert channel', id::text);
    end if;
    select string_agg(rc.rule_id::text, ', ' order by rc.rule_id) into rules
    from data.alert_rule_channels as rc where rc.channel_id = delete_alert_channel.id;
    if rules is not null then
        raise sqlstate 'PT409' using
            message = 'alert channel ' || id || ' is used by rule(s) ' || rules
                || ': take it out of them first',
            detail = json_build_object('rule_ids', string_to_array(rules, ', ')::bigint[])::text,
            hint = 'channel_in_use';
    end if;
    perform internal.cancel_alert_deliveries(null, id, 'the channel was deleted');
    delete from data.alert_channels as c where c.id = delete_alert_channel.id;
    perform set_config('response.status', '204', true);
    return null;
end
$$;

comment on function api.delete_alert_channel(bigint) is
E'@http DELETE /api/v1/alert-channels/{id}\n'
'Deletes a channel: 204; 409 channel_in_use while a rule notifies it. Its deliveries not yet sent are cancelled (kept, with status cancelled).';

create function api.test_alert_channel(id bigint)
returns jsonb
language plpgsql
volatile
as $$
declare
    delivery_id uuid;
    shown jsonb;
begin
    perform from data.alert_channels as c where c.id = test_alert_channel.id;
    if not found then
        perform api.alert_not_found('alert channel', id::text);
    end if;
    delivery_id := internal.queue_test_alert(test_alert_channel.id);
    select api.alert_delivery_json(d) into shown from api.alert_deliveries as d
    where d.id = delivery_id;
    perform set_config('response.status', '202', true);
    return shown;
end
$$;

comment on function api.test_alert_channel(bigint) is
E'@http POST /api/v1/alert-channels/{id}/test\n'
'Queues a test delivery (event_type alert.channel.test) to the channel: 202 with the delivery; when the receiver answers 2xx the channel is verified. Follow it at GET /api/v1/alert-deliveries/{id}.';
