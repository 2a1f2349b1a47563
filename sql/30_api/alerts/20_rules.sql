-- Alert rules: what a user wants to be told about, and the channels to tell.

create function api.alert_rule_channels(payload jsonb)
returns bigint[]
language plpgsql
stable
as $$
declare
    given jsonb := payload -> 'alert_channel_ids';
    ids bigint[];
    missing bigint;
begin
    if jsonb_typeof(given) is distinct from 'array' or jsonb_array_length(given) not between 1 and 20
        or exists (
            select from jsonb_array_elements(given) as v
            where jsonb_typeof(v) <> 'number' or v::numeric <> trunc(v::numeric)
                or v::numeric not between 1 and 9223372036854775807
        ) then
        perform internal.invalid_field(
            'alert_channel_ids', 'must be an array of 1 to 20 channel ids (integers)'
        );
    end if;
    ids := array(select distinct v::bigint from jsonb_array_elements_text(given) as v);
    select i into missing from unnest(ids) as i
    where not exists (select from data.alert_channels as c where c.id = i) limit 1;
    if missing is not null then
        perform internal.invalid_field('alert_channel_ids', missing || ' is not one of your alert channels');
    end if;
    return ids;
end
$$;

comment on function api.alert_rule_channels(jsonb) is
'The body''s alert_channel_ids: 1 to 20 of the caller''s own channels; 422 naming one that is not.';

create function api.alert_rule_filters(filters jsonb)
returns table (
    incident_types text[], units text[], channels text[], keywords text, address text
)
language plpgsql
stable
as $$
begin
    if filters is null or filters = 'null'::jsonb then
        filters := '{}';
    end if;
    if jsonb_typeof(filters) <> 'object' then
        perform internal.invalid_field('filters', 'must be an object');
    end if;
    select k into keywords from jsonb_object_keys(filters) as k
    where k not in ('incident_types', 'units', 'channels', 'keywords', 'address') limit 1;
    if keywords is not null then
        perform internal.invalid_field('filters.' || keywords, 'is not a filter (incident_types, units, channels, keywords, address)');
    end if;
    incident_types := internal.text_list(filters -> 'incident_types', 'filters.incident_types');
    units := internal.text_list(filters -> 'units', 'filters.units');
    channels := internal.text_list(filters -> 'channels', 'filters.channels');
    keywords := nullif(trim(internal.payload_text(filters, 'keywords')), '');
    if length(keywords) > 200 then
        perform internal.invalid_field('filters.keywords', 'must be at most 200 characters');
    end if;
    if keywords is not null and numnode(websearch_to_tsquery('english', keywords)) = 0 then
        perform internal.invalid_field('filters.keywords', 'has no word to search for (only stop words?)');
    end if;
    address := nullif(trim(internal.payload_text(filters, 'address')), '');
    if length(address) > 200 then
        perform internal.invalid_field('filters.address', 'must be at most 200 characters');
    end if;
    return next;
end
$$;

comment on function api.alert_rule_filters(jsonb) is
'A rule body''s filters, checked: incident_types, units, channels (arrays of at most 50 strings), keywords (websearch syntax, at most 200 characters, at least one searchable word), address (a substring, at most 200 characters); 422 naming the field.';

create function api.alert_rule_settings(payload jsonb, creating boolean)
returns table (name text, enabled boolean, throttle_sec integer)
language plpgsql
immutable
as $$
begin
    perform api.alert_check_fields(
        payload, array['name', 'enabled', 'throttle_sec', 'filters', 'alert_channel_ids']
    );
    name := internal.payload_text(payload, 'name');
    if (creating or payload ? 'name') and (name is null or length(name) not between 1 and 200) then
        perform internal.invalid_field('name', 'must be 1 to 200 characters');
    end if;
    enabled := internal.payload_boolean(payload, 'enabled');
    if payload ? 'throttle_sec' and (
        jsonb_typeof(payload -> 'throttle_sec') <> 'number'
        or (payload ->> 'throttle_sec')::numeric <> trunc((payload ->> 'throttle_sec')::numeric)
        or (payload ->> 'throttle_sec')::numeric not between 0 and 604800
    ) then
        perform internal.invalid_field('throttle_sec', 'must be an integer from 0 to 604800 (a week)');
    end if;
    throttle_sec := (payload ->> 'throttle_sec')::numeric::integer;  -- 10.0 is 10
    if creating and not payload ? 'alert_channel_ids' then
        perform internal.invalid_field('alert_channel_ids', 'is required: the channels to notify');
    end if;
    return next;
end
$$;

comment on function api.alert_rule_settings(jsonb, boolean) is
'A rule body''s name, enabled and throttle_sec, checked (name required when creating); 422 naming the field.';

create function api.set_alert_rule_channels(rule_id bigint, owner_id bigint, channel_ids bigint[])
returns void
language sql
volatile
as $$
    delete from data.alert_rule_channels as rc
    where rc.rule_id = set_alert_rule_channels.rule_id and rc.channel_id <> all(channel_ids);
    insert into data.alert_rule_channels (rule_id, channel_id, user_id)
    select set_alert_rule_channels.rule_id, c, owner_id from unnest(channel_ids) as c
    on conflict do nothing;
$$;

comment on function api.set_alert_rule_channels(bigint, bigint, bigint[]) is
'Makes a rule notify exactly these channels.';

create function api.list_alert_rules()
returns jsonb
language plpgsql
stable
as $$
begin
    perform internal.alert_subject_required();
    return (
        select jsonb_build_object('data', coalesce(jsonb_agg(api.alert_rule_json(r) order by r.id), '[]'))
        from api.alert_rules as r
    );
end
$$;

comment on function api.list_alert_rules() is
E'@http GET /api/v1/alert-rules\nThe caller''s alert rules (a token with a sub is required).';

create function api.get_alert_rule(id bigint)
returns jsonb
language plpgsql
stable
as $$
declare
    shown jsonb;
begin
    select api.alert_rule_json(r) into shown from api.alert_rules as r where r.id = get_alert_rule.id;
    if shown is null then
        perform api.alert_not_found('alert rule', id::text);
    end if;
    return shown;
end
$$;

comment on function api.get_alert_rule(bigint) is
E'@http GET /api/v1/alert-rules/{id}\nOne of the caller''s rules; 404 when it is not theirs.';

create function api.create_alert_rule(payload jsonb)
returns jsonb
language plpgsql
volatile
as $$
declare
    owner_id bigint := internal.alert_user();
    settings record;
    filters record;
    channel_ids bigint[];
    new_id bigint;
    url text;
begin
    select * into settings from api.alert_rule_settings(payload, true);
    select * into filters from api.alert_rule_filters(payload -> 'filters');
    channel_ids := api.alert_rule_channels(payload);
    insert into data.alert_rules (
        user_id, name, enabled, throttle_sec, incident_types, units, channels, keywords, address
    ) values (
        owner_id, settings.name, coalesce(settings.enabled, true), coalesce(settings.throttle_sec, 0),
        filters.incident_types, filters.units, filters.channels, filters.keywords, filters.address
    )
    returning id into new_id;
    perform api.set_alert_rule_channels(new_id, owner_id, channel_ids);
    url := internal.absolute_url(replace(
        internal.route_path('api.get_alert_rule(bigint)'), '{id}', new_id::text
    ));
    perform set_config('response.status', '201', true);
    perform set_config('response.headers', json_build_object('Location', url)::text, true);
    return api.get_alert_rule(new_id);
end
$$;

comment on function api.create_alert_rule(jsonb) is
E'@http POST /api/v1/alert-rules\n'
'@body {"type": "object", "required": ["name", "alert_channel_ids"], "additionalProperties": false, "properties": {'
'"name": {"type": "string", "minLength": 1, "maxLength": 200}, '
'"enabled": {"type": ["boolean", "null"]}, '
'"throttle_sec": {"type": "integer", "minimum": 0, "maximum": 604800, "description": "after a delivery is queued, matches within this many seconds are recorded as throttled"}, '
'"filters": {"type": ["object", "null"], "additionalProperties": false, "properties": {'
'"incident_types": {"type": ["array", "null"], "maxItems": 50, "items": {"type": "string", "minLength": 1, "maxLength": 100}}, '
'"units": {"type": ["array", "null"], "maxItems": 50, "items": {"type": "string", "minLength": 1, "maxLength": 100}}, '
'"channels": {"type": ["array", "null"], "maxItems": 50, "items": {"type": "string", "minLength": 1, "maxLength": 100}, "description": "radio channels"}, '
'"keywords": {"type": ["string", "null"], "maxLength": 200, "description": "full-text search on the transcript (websearch syntax: words, \\"a phrase\\", or, -not)"}, '
'"address": {"type": ["string", "null"], "maxLength": 200, "description": "a case-insensitive substring of the address"}}}, '
'"alert_channel_ids": {"type": "array", "minItems": 1, "maxItems": 20, "items": {"type": "integer", "minimum": 1}}}}\n'
'Creates an alert rule: every filter given must match a new incident (within a filter, any of its values; case-insensitive); the rule then queues one delivery per channel. 201 with the rule. At most 100 per user.';

create function api.update_alert_rule(id bigint, payload jsonb)
returns jsonb
language plpgsql
volatile
as $$
declare
    settings record;
    current_filters jsonb;
    filters record;
    owner_id bigint;
begin
    select * into settings from api.alert_rule_settings(payload, false);
    select jsonb_build_object(
        'incident_types', r.incident_types, 'units', r.units, 'channels', r.channels,
        'keywords', r.keywords, 'address', r.address
    ), r.user_id into current_filters, owner_id
    from data.alert_rules as r where r.id = update_alert_rule.id for update;
    if not found then
        perform api.alert_not_found('alert rule', id::text);
    end if;
    -- The filters given replace those of the same name; the others stay.
    if payload ? 'filters' and jsonb_typeof(payload -> 'filters') not in ('object', 'null') then
        perform internal.invalid_field('filters', 'must be an object');
    end if;
    select * into filters from api.alert_rule_filters(
        current_filters || coalesce(nullif(payload -> 'filters', 'null'::jsonb), '{}')
    );
    update data.alert_rules as r
    set name = coalesce(settings.name, r.name),
        enabled = coalesce(settings.enabled, r.enabled),
        throttle_sec = coalesce(settings.throttle_sec, r.throttle_sec),
        incident_types = filters.incident_types,
        units = filters.units,
        channels = filters.channels,
        keywords = filters.keywords,
        address = filters.address,
        updated_at = now()
    where r.id = update_alert_rule.id;
    if payload ? 'alert_channel_ids' then
        perform api.set_alert_rule_channels(id, owner_id, api.alert_rule_channels(payload));
    end if;
    return api.get_alert_rule(id);
end
$$;

comment on function api.update_alert_rule(bigint, jsonb) is
E'@http PATCH /api/v1/alert-rules/{id}\n'
'@body {"type": "object", "additionalProperties": false, "properties": {'
'"name": {"type": "string", "minLength": 1, "maxLength": 200}, '
'"enabled": {"type": ["boolean", "null"]}, '
'"throttle_sec": {"type": "integer", "minimum": 0, "maximum": 604800}, '
'"filters": {"type": ["object", "null"], "additionalProperties": false, "properties": {'
'"incident_types": {"type": ["array", "null"], "maxItems": 50, "items": {"type": "string", "minLength": 1, "maxLength": 100}}, '
'"units": {"type": ["array", "null"], "maxItems": 50, "items": {"type": "string", "minLength": 1, "maxLength": 100}}, '
'"channels": {"type": ["array", "null"], "maxItems": 50, "items": {"type": "string", "minLength": 1, "maxLength": 100}}, '
'"keywords": {"type": ["string", "null"], "maxLength": 200}, '
'"address": {"type": ["string", "null"], "maxLength": 200}}}, '
'"alert_channel_ids": {"type": "array", "minItems": 1, "maxItems": 20, "items": {"type": "integer", "minimum": 1}}}}\n'
'Changes a rule: the fields given (a filter given replaces that filter, null clears it; the others stay). 200 with the rule.';

create function api.delete_alert_rule(id bigint)
returns jsonb
language plpgsql
volatile
as $$
begin
    perform internal.cancel_alert_deliveries(id, null, 'the rule was deleted');
    delete from data.alert_rules as r where r.id = delete_alert_rule.id;
    if not found then
        perform api.alert_not_found('alert rule', id::text);
    end if;
    perform set_config('response.status', '204', true);
    return null;
end
$$;

comment on function api.delete_alert_rule(bigint) is
E'@http DELETE /api/v1/alert-rules/{id}\nDeletes a rule: 204. Its deliveries not yet sent are cancelled (kept, with status cancelled).';
