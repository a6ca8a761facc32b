from pathlib import Path

import pytest

from hub import domains
from hub.core.settings import Settings, SettingsError


def test_defaults_need_no_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("IEUM_DATABASE_URL", "IEUM_KAFKA_BOOTSTRAP", "IEUM_PORT", "IEUM_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env()
    assert settings.database_url is None
    assert settings.kafka_bootstrap is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.data_dir == Path(".ieum")


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IEUM_PORT", "9001")
    monkeypatch.setenv("IEUM_KAFKA_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    settings = Settings.from_env()
    assert settings.port == 9001
    assert settings.kafka_bootstrap == "kafka-1:9092,kafka-2:9092"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("IEUM_PORT", "eighty"),
        ("IEUM_PORT", "70000"),
        ("IEUM_LOG_LEVEL", "loud"),
        ("IEUM_DATABASE_URL", "mysql://localhost/ieum"),
        ("IEUM_KAFKA_BOOTSTRAP", "localhost"),
        ("IEUM_DB_POOL_MAX", "0"),
    ],
)
def test_invalid_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        Settings.from_env()
    assert variable in str(caught.value)
    assert repr(value) in str(caught.value)


def test_every_setting_is_documented() -> None:
    """The hub's own settings and every installed domain's section."""
    operating = (Path(__file__).parents[2] / "docs" / "operating.md").read_text()
    sections = [d.settings for d in domains.installed().values() if d.settings is not None]
    assert sections, "the installed domains declare settings sections"
    for kind in (Settings, *sections):
        prefix = kind.model_config.get("env_prefix", "IEUM_")
        for name in kind.model_fields:
            variable = f"{prefix}{name}".upper()
            assert variable in operating, f"{variable} is not in docs"


ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (refused: the point of the test)


@pytest.mark.parametrize(
    ("overrides", "ok"),
    [
        ({}, True),
        ({"public_url": "http://localhost:8000"}, True),
        ({"host": ALL_INTERFACES, "public_url": "https://hub.example.go.kr"}, True),
        ({"host": ALL_INTERFACES}, False),
        ({"public_url": "http://hub.example.go.kr"}, False),
    ],
)
def test_the_issuer_needs_https_off_loopback(overrides: dict[str, str], ok: bool) -> None:
    settings = Settings.from_env(**overrides)
    if ok:
        settings.check_issuer()
    else:
        with pytest.raises(SettingsError, match="IEUM_PUBLIC_URL"):
            settings.check_issuer()


def test_a_domain_section_is_read_and_checked_with_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One settings object: a domain's section comes from the same environment, and its
    bad values are reported together with the hub's own."""
    from resolvers.sensors.settings import SensorsSettings

    monkeypatch.setenv("IEUM_K_ANONYMITY", "5")
    assert Settings.from_env().section(SensorsSettings).k_anonymity == 5
    monkeypatch.setenv("IEUM_K_ANONYMITY", "0")
    monkeypatch.setenv("IEUM_PORT", "eighty")
    with pytest.raises(SettingsError) as caught:
        Settings.from_env()
    assert "IEUM_K_ANONYMITY" in str(caught.value)
    assert "IEUM_PORT" in str(caught.value)


def test_an_override_goes_to_the_section_that_has_it() -> None:
    from resolvers.sensors.settings import SensorsSettings

    settings = Settings.from_env(port=9100, k_anonymity=7)
    assert (settings.port, settings.section(SensorsSettings).k_anonymity) == (9100, 7)
    with pytest.raises(TypeError, match="no such setting: colour"):
        Settings.from_env(colour="blue")
