"""PUT, PATCH and DELETE routes declared in SQL, next to GET and POST (issue 17's engine
item): path parameters and body keys bind to arguments, the token's claims (its sub)
reach SQL, a function's 204 is sent without a body, and OPTIONS / 405 list them."""

from __future__ import annotations

import dataclasses
import time

import jwt
import pytest

from tests.conftest import app_client

SECRET = "m" * 40
NOTES = """
    create table public.method_notes (id bigint primary key, text text, owner text);
    grant select, insert, update, delete on public.method_notes to emberlog_anon;

    create function api.put_note(id bigint, text text) returns json language sql volatile as $$
        insert into public.method_notes values (put_note.id, put_note.text,
            current_setting('request.jwt.claims', true)::json ->> 'sub')
        on conflict (id) do update set text = excluded.text, owner = excluded.owner
        returning json_build_object('id', id, 'text', text, 'owner', owner)
    $$;
    comment on function api.put_note(bigint, text) is '@http PUT /api/v1/notes/{id}';

    create function api.patch_note(id bigint, payload jsonb) returns json
    language plpgsql volatile as $$
    declare changed json;
    begin
        update public.method_notes as n set text = coalesce(payload ->> 'text', n.text)
        where n.id = patch_note.id
        returning json_build_object('id', n.id, 'text', n.text, 'owner', n.owner) into changed;
        if changed is null then
            raise sqlstate 'PT404' using message = 'no such note', hint = 'not_found';
        end if;
        return changed;
    end $$;
    comment on function api.patch_note(bigint, jsonb) is '@http PATCH /api/v1/notes/{id}';

    create function api.delete_note(id bigint) returns json language plpgsql volatile as $$
    begin
        delete from public.method_notes as n where n.id = delete_note.id;
        if not found then
            raise sqlstate 'PT404' using message = 'no such note', hint = 'not_found';
        end if;
        perform set_config('response.status', '204', true);
        return null;
    end $$;
    comment on function api.delete_note(bigint) is '@http DELETE /api/v1/notes/{id}';

    grant execute on function api.put_note(bigint, text), api.patch_note(bigint, jsonb),
        api.delete_note(bigint) to emberlog_anon;
"""


@pytest.fixture
def notes(db):
    db.execute(NOTES)
    yield
    db.execute(
        "drop function api.put_note(bigint, text), api.patch_note(bigint, jsonb),"
        " api.delete_note(bigint); drop table public.method_notes"
    )


@pytest.fixture
async def client(settings, db, notes):
    settings = dataclasses.replace(settings, jwt_secret=SECRET, jwt_audience=None)
    async with app_client(settings) as conductor:
        yield conductor


def bearer(sub: str) -> dict[str, str]:
    claims = {"sub": sub, "exp": int(time.time()) + 60}
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


async def test_put_patch_and_delete_bind_the_path_and_the_body(client, db):
    put = await client.simulate_put(
        "/api/v1/notes/7", json={"text": "E12 on scene"}, headers=bearer("ada")
    )
    assert put.status_code == 200
    assert put.json == {"id": 7, "text": "E12 on scene", "owner": "ada"}  # the token's sub

    patched = await client.simulate_patch(
        "/api/v1/notes/7", json={"text": "E12 available"}, headers=bearer("ada")
    )
    assert patched.status_code == 200 and patched.json["text"] == "E12 available"

    deleted = await client.simulate_delete("/api/v1/notes/7", headers=bearer("ada"))
    assert deleted.status_code == 204
    assert deleted.content == b""  # a 204 carries no body
    assert db.execute("select count(*) from public.method_notes").fetchone() == (0,)

    again = await client.simulate_delete("/api/v1/notes/7", headers=bearer("ada"))
    assert again.status_code == 404 and again.json["error"]["code"] == "not_found"


async def test_bad_input_to_the_new_methods_is_a_4xx_that_writes_nothing(client, db):
    assert (await client.simulate_patch("/api/v1/notes/x", json={})).status_code == 400
    missing = await client.simulate_patch("/api/v1/notes/8", json={"text": "?"})
    assert missing.status_code == 404
    not_json = await client.simulate_put(
        "/api/v1/notes/8", body="text", headers={"Content-Type": "text/plain"}
    )
    assert not_json.status_code == 415
    assert db.execute("select count(*) from public.method_notes").fetchone() == (0,)


async def test_options_and_405_list_the_methods_the_database_declares(client):
    options = await client.simulate_options("/api/v1/notes/1")
    assert options.status_code == 204
    assert set(options.headers["allow"].split(", ")) == {"PUT", "PATCH", "DELETE", "OPTIONS"}
    wrong = await client.simulate_post("/api/v1/notes/1", json={})
    assert wrong.status_code == 405
    assert set(wrong.headers["allow"].split(", ")) >= {"PUT", "PATCH", "DELETE"}
