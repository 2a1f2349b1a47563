"""Settings are declared once (app/settings.py): the environment, --help and
docs/configuration.md all follow that one declaration."""

from __future__ import annotations

import pytest

from app import settings_docs
from app.environment import from_env
from app.settings import Settings, SettingsError, declared


def test_docs_configuration_md_is_the_generated_one():
    written = settings_docs.DOC.read_text(encoding="utf-8")
    assert written == settings_docs.markdown(), (
        "docs/configuration.md is stale: emberlog-api settings --markdown > docs/configuration.md"
    )


def test_every_setting_is_declared_whole_and_once():
    settings = list(declared())
    variables = [one.variable for one in settings]
    assert len(variables) == len(set(variables))
    aliases = [alias for one in settings for alias in one.aliases]
    assert not set(aliases) & set(variables)
    for one in settings:
        assert one.help.strip() and one.parser.kind and one.group, one.variable
        assert one.variable in settings_docs.help_text()


@pytest.mark.parametrize("one", list(declared()), ids=lambda one: one.variable)
def test_a_default_written_out_reads_back_as_the_default(one):
    text = settings_docs.shown(one.default)
    if text == "unset" or one.parser.kind == "path of a file":
        return  # nothing to write (unset), or a file that must exist
    assert getattr(from_env({one.variable: text}), one.name) == one.default


def test_an_empty_environment_is_the_defaults():
    assert from_env({}) == Settings()


@pytest.mark.parametrize(
    ("workers", "most", "least", "per_worker"),
    [
        (1, 10, 2, (10, 2)),
        (2, 10, 2, (5, 1)),
        (3, 10, 2, (3, 1)),
        (4, 3, 0, (1, 0)),
        (2, 1, 5, (1, 1)),  # never more kept open than opened
    ],
)
def test_the_pool_is_the_servers_split_between_its_workers(workers, most, least, per_worker):
    env = {"WORKERS": str(workers), "POOL_MAX_SIZE": str(most), "POOL_MIN_SIZE": str(least)}
    settings = from_env(env)
    assert (settings.worker_pool_max_size, settings.worker_pool_min_size) == per_worker


def test_old_names_still_work_and_say_so():
    old = from_env(
        {
            "TRUSTED_INGEST_NETWORKS": "10.0.0.0/8",
            "INGEST_ROLE": "emberlog_ingest",
            "AUDIO_BASE_URL": "https://audio.example/rec",
        }
    )
    assert [str(n) for n in old.trusted_networks] == ["10.0.0.0/8"]
    assert dict(old.db_settings) == {"emberlog.audio_base_url": "https://audio.example/rec"}
    assert len(old.deprecations) == 3
    assert all("deprecated" in note for note in old.deprecations)
    new = from_env({"TRUSTED_NETWORKS": "10.0.0.0/8", "TRUSTED_INGEST_NETWORKS": "192.0.2.0/24"})
    assert [str(n) for n in new.trusted_networks] == ["10.0.0.0/8"]  # the new name wins
    assert new.deprecations == ()


@pytest.mark.parametrize(
    "env",
    [
        {"DB_SETTINGS": '{"role": "postgres"}'},  # PostgreSQL's own: never from here
        {"DB_SETTINGS": '{"search_path": "evil"}'},
        {"DB_SETTINGS": "[1]"},
        {"DB_SETTINGS": '{"emberlog.x": {"nested": 1}}'},
        {"ROUTE_POOL_SHARE": "0"},
        {"PUBLIC_URL": "emberlog.example"},
        {"PORT": "http"},
        {"LOG_LEVEL": "loud"},
    ],
)
def test_bad_values_are_refused_naming_the_variable(env):
    with pytest.raises(SettingsError, match=next(iter(env))):
        from_env(env)


def test_the_settings_in_force_hide_secrets_and_passwords():
    settings = Settings(
        jwt_secret="s" * 32,
        notifier_secret="whsec_" + "A" * 44,
        database_url="postgresql://app:hunter2@db.example/emberlog",
    )
    lines = dict(line.split("=", 1) for line in settings_docs.in_force(settings))
    assert lines["JWT_SECRET"] == lines["NOTIFIER_SECRET"] == "(set)"
    assert "hunter2" not in lines["DATABASE_URL"] and "db.example" in lines["DATABASE_URL"]
    assert lines["MQTT_PASSWORD"] == "unset"
    assert set(lines) == {one.variable for one in declared()}


def test_the_worker_refuses_a_notifier_secret_it_cannot_sign_with():
    from app.worker.verify import check_notifier_secret

    check_notifier_secret(Settings())  # unset: nothing to check
    check_notifier_secret(Settings(notifier_secret="whsec_" + "A" * 44))
    with pytest.raises(SettingsError, match="NOTIFIER_SECRET"):
        check_notifier_secret(Settings(notifier_secret="whsec_!!"))
