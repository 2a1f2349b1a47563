"""The broker side of the bridge: a paho-mqtt client on its own network thread.

Messages are acknowledged by the bridge (``manual_ack``), only after the database stored
what they say; the session is persistent (``clean_session=False`` under a fixed client
id), so QoS 1 messages published while the bridge is away wait at the broker. paho
reconnects by itself, with backoff; every (re)connect subscribes again.
"""

from __future__ import annotations

import logging
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from ..settings import Settings
from . import service

log = logging.getLogger("emberlog.bridge")

SUFFIXES = ("rates", "recorders", "calls_active")
KEEPALIVE_SECONDS = 30


@dataclass(frozen=True)
class Received:
    """One message as the broker delivered it: its topic's type, payload and ack handle."""

    message_type: str
    payload: bytes
    mid: int
    qos: int
    connection: int  # which connection delivered it: acks go back on that one only


class Source:
    """The MQTT subscription; ``on_message`` is called on paho's thread."""

    def __init__(self, settings: Settings, on_message: Callable[[Received], None]) -> None:
        self.settings = settings
        self.connected = False
        self.connection = 0
        self._stopping = False
        self._on_message = on_message
        self._types = {f"{settings.mqtt_topic_prefix.rstrip('/')}/{s}": s for s in SUFFIXES}
        self.client = self._client()

    def _client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=s.mqtt_client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if s.mqtt_username:
            client.username_pw_set(s.mqtt_username, s.mqtt_password)
        if s.mqtt_tls:
            ca = str(s.mqtt_tls_ca_file) if s.mqtt_tls_ca_file else None
            client.tls_set(ca_certs=ca, cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._connected
        client.on_connect_fail = self._connect_failed
        client.on_disconnect = self._disconnected
        client.on_message = self._message
        return client

    @property
    def topics(self) -> list[str]:
        return list(self._types)

    def start(self) -> None:
        s = self.settings
        log.info("connecting to MQTT %s:%d%s", s.mqtt_host, s.mqtt_port, " (TLS)" * s.mqtt_tls)
        self.client.connect_async(s.mqtt_host, s.mqtt_port, keepalive=KEEPALIVE_SECONDS)
        self.client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()
        self._set_connected(False)

    def ack(self, received: Received) -> None:
        """Acknowledge on the connection that delivered it; one delivered on an earlier
        connection the broker sends again (its packet id may now be another's)."""
        if received.qos > 0 and received.connection == self.connection:
            self.client.ack(received.mid, received.qos)

    def _connected(self, client: mqtt.Client, userdata: object, flags: object, reason: object,
                   properties: object) -> None:  # fmt: skip
        if getattr(reason, "is_failure", False):
            log.error("MQTT broker refused the connection: %s", reason)
            return
        self.connection += 1
        client.subscribe([(topic, 1) for topic in self._types])
        log.info("subscribed to %s", ", ".join(self._types))
        self._set_connected(True)

    def _connect_failed(self, client: mqtt.Client, userdata: object) -> None:
        # Called by paho inside its except block: the exception is the current one.
        s = self.settings
        log.warning("cannot connect to MQTT %s:%d: %s; retrying", s.mqtt_host, s.mqtt_port,
                    sys.exc_info()[1])  # fmt: skip

    def _disconnected(self, client: mqtt.Client, userdata: object, flags: object, reason: object,
                      properties: object) -> None:  # fmt: skip
        if self.connected and not self._stopping:
            log.warning("MQTT connection lost (%s): reconnecting", reason)
            service.RECONNECTS.labels("mqtt").inc()
        self._set_connected(False)

    def _message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        message_type = self._types.get(message.topic)
        if message_type is None:  # not one of ours (a wider subscription left by a session)
            if message.qos > 0:
                client.ack(message.mid, message.qos)
            return
        self._on_message(
            Received(message_type, message.payload, message.mid, message.qos, self.connection)
        )

    def _set_connected(self, value: bool) -> None:
        self.connected = value
        service.CONNECTED.labels("mqtt").set(int(value))
