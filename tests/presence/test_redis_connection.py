"""Where Redis is, read from the environment: a URL or Sentinels."""

import pytest

from signaling.presence.redis_connection import RedisConfig, parse_sentinels


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        ("s1:26380", (("s1", 26380),)),
        ("s1", (("s1", 26379),)),
        (" s1:1 , s2:2 ,", (("s1", 1), ("s2", 2))),
        ("[::1]:26379", (("::1", 26379),)),
    ],
)
def test_sentinels_are_read_as_host_and_port(value, expected):
    assert parse_sentinels(value) == expected


@pytest.mark.parametrize("value", ["s1:", "s1:port", ":26379", "s1:70000", "s1:0"])
def test_a_bad_sentinel_address_is_refused(value):
    with pytest.raises(ValueError, match="host:port"):
        parse_sentinels(value)


def test_without_sentinels_the_url_is_used():
    config = RedisConfig.from_environment({"REDIS_URL": "redis://r:6379/1"})
    assert config == RedisConfig(url="redis://r:6379/1")
    assert config.enabled
    host = config.channel_layer_host(socket_timeout=15)
    assert host["address"] == "redis://r:6379/1"
    assert host["socket_timeout"] == 15
    assert host["retry"].get_retries() == 1


def test_sentinels_take_precedence_and_carry_the_master_settings():
    config = RedisConfig.from_environment(
        {
            "REDIS_URL": "redis://ignored",
            "REDIS_SENTINELS": "s1:1,s2:2,s3:3",
            "REDIS_SENTINEL_MASTER": "prod",
            "REDIS_PASSWORD": "master-secret",
            "REDIS_DB": "2",
            "REDIS_SENTINEL_PASSWORD": "sentinel-secret",
        }
    )
    host = config.channel_layer_host(socket_timeout=15, socket_connect_timeout=2)
    assert host["sentinels"] == [("s1", 1), ("s2", 2), ("s3", 3)]
    assert host["master_name"] == "prod"
    assert (host["password"], host["db"]) == ("master-secret", 2)
    assert host["sentinel_kwargs"] == {
        "socket_timeout": 15,
        "socket_connect_timeout": 2,
        "password": "sentinel-secret",
    }
    assert "address" not in host


def test_no_redis_configured_means_one_process():
    assert not RedisConfig.from_environment({}).enabled


def test_a_bad_database_number_is_refused():
    with pytest.raises(ValueError, match="REDIS_DB"):
        RedisConfig.from_environment({"REDIS_SENTINELS": "s1", "REDIS_DB": "x"})
