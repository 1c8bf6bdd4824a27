"""Home Assistant's MQTT discovery (``--mqtt URL --ha-discovery [PREFIX]``): the cameras appear by themselves.

Per camera, retained on ``PREFIX/<component>/<node_id>/<object_id>/config`` (Home Assistant's
discovery topic; https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery):

- a ``sensor``: the camera's debounced label (``value_template`` of the state JSON), the score, the
  previous label, the frame and the model as attributes (``json_attributes_topic``);
- a ``binary_sensor`` per class: "in view" (``ON`` while the debounced label is that class);
- every entity has ``availability_topic`` (``online`` at start, ``offline`` as the connection's last
  will, so a killed process goes offline too), a stable ``unique_id`` (node, camera, class) and a
  ``device`` block (one device per camera: identifiers, name, model, manufacturer, sw_version).

State is JSON on ``edge_classify/<node_id>/<camera>/state``, retained, published at start (nothing
seen yet: ``unknown``) and at each debounced change. At start the retained configs under this node
are read back: an entity of a camera or class that is no longer there gets an empty retained
config, which removes it from Home Assistant.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from typing import Any, Sequence
from urllib.parse import unquote, urlsplit

from .errors import EdgeError

log = logging.getLogger("edge_classify.runtime")

STATE_ROOT = "edge_classify"
ONLINE, OFFLINE = "online", "offline"


def slug(text: str) -> str:
    """A topic and ``unique_id`` part: letters, digits, ``_`` and ``-`` only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "x"


def default_node() -> str:
    return slug(f"edge_classify_{socket.gethostname()}")


class HomeAssistant:
    """Discovery configs, availability and state for Home Assistant over one MQTT connection."""

    def __init__(
        self,
        url: str,
        prefix: str,
        cameras: Sequence[str],
        labels: Sequence[str],
        model: str,
        node: str | None = None,
        version: str = "",
    ) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise EdgeError("--ha-discovery needs paho-mqtt: pip install 'edge-classify[mqtt]'") from None
        from .events import _mqtt_address

        host, port, _ = _mqtt_address(url)
        parts = urlsplit(url)
        self.prefix, self.node = prefix.strip("/"), slug(node or default_node())
        self.cameras, self.labels, self.model, self.version = list(cameras), list(labels), model, version
        self.availability = f"{STATE_ROOT}/{self.node}/availability"
        self._lock = threading.Lock()
        self._retained: set[str] = set()  # config topics of this node already on the broker
        self._states: dict[str, dict[str, Any]] = {c: {"label": "unknown", "score": None} for c in self.cameras}
        self.published = 0
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{self.node}-ha", clean_session=True)
        if parts.username is not None:
            self._client.username_pw_set(unquote(parts.username), unquote(parts.password) if parts.password else None)
        # The last will: the broker publishes "offline" when this connection dies (SIGKILL included).
        self._client.will_set(self.availability, OFFLINE, qos=1, retain=True)
        self._client.on_connect = self._connected
        self._client.on_message = self._message
        self._client.reconnect_delay_set(1, 30)
        self._client.connect_async(host, port, keepalive=15)
        self._client.loop_start()
        self._synced = threading.Event()

    # -- what is published ---------------------------------------------------------------------

    def state_topic(self, camera: str) -> str:
        return f"{STATE_ROOT}/{self.node}/{slug(camera)}/state"

    def device(self, camera: str) -> dict[str, Any]:
        return {
            "identifiers": [f"{self.node}_{slug(camera)}"],
            "name": f"{camera} ({self.node})",
            "model": self.model,
            "manufacturer": "edge-classify",
            "sw_version": self.version,
        }

    def configs(self) -> dict[str, dict[str, Any]]:
        """Every discovery config: topic -> payload."""
        out: dict[str, dict[str, Any]] = {}
        for camera in self.cameras:
            cam = slug(camera)
            common = {
                "availability_topic": self.availability,
                "payload_available": ONLINE,
                "payload_not_available": OFFLINE,
                "state_topic": self.state_topic(camera),
                "device": self.device(camera),
            }
            out[f"{self.prefix}/sensor/{self.node}/{cam}_label/config"] = {
                **common,
                "name": "label",
                "unique_id": f"{self.node}_{cam}_label",
                "value_template": "{{ value_json.label }}",
                "json_attributes_topic": self.state_topic(camera),
                "icon": "mdi:tag-search",
            }
            for label in self.labels:
                out[f"{self.prefix}/binary_sensor/{self.node}/{cam}_{slug(label)}/config"] = {
                    **common,
                    "name": f"{label} in view",
                    "unique_id": f"{self.node}_{cam}_{slug(label)}",
                    "value_template": "{{ 'ON' if value_json.label == " + json.dumps(label) + " else 'OFF' }}",
                    "payload_on": "ON",
                    "payload_off": "OFF",
                }
        return out

    def _connected(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _properties: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("Home Assistant discovery: the broker refused the connection (%s)", reason)
            return
        # Read back what this node left retained, so entities no longer here can be removed.
        client.subscribe(f"{self.prefix}/+/{self.node}/+/config", qos=1)
        threading.Thread(target=self._publish_all, name="ha-discovery", daemon=True).start()

    def _message(self, _client: Any, _userdata: Any, message: Any) -> None:
        if message.retain and message.payload:
            with self._lock:
                self._retained.add(message.topic)

    def _publish_all(self) -> None:
        time.sleep(0.5)  # the broker sends retained messages at once on subscribing
        configs = self.configs()
        with self._lock:
            stale = sorted(self._retained - set(configs))
        client = self._client
        client.unsubscribe(f"{self.prefix}/+/{self.node}/+/config")
        for topic in stale:
            client.publish(topic, b"", qos=1, retain=True)
        for topic, payload in configs.items():
            client.publish(topic, json.dumps(payload), qos=1, retain=True)
        client.publish(self.availability, ONLINE, qos=1, retain=True)
        with self._lock:
            states = dict(self._states)
        for camera, state in states.items():
            client.publish(self.state_topic(camera), json.dumps(state), qos=1, retain=True)
        log.info("Home Assistant discovery: %d entities, %d removed", len(configs), len(stale))
        self._synced.set()

    def wait_synced(self, timeout: float = 10.0) -> bool:
        return self._synced.wait(timeout)

    # -- fed by the events -----------------------------------------------------------------------

    def event(self, event: dict[str, Any]) -> None:
        """A debounced label change: the camera's state, retained."""
        camera = str(event.get("camera") or event.get("source"))
        if camera not in self._states:
            return
        state = {k: event.get(k) for k in ("label", "score", "previous", "frame", "time", "model")}
        with self._lock:
            self._states[camera] = state
        self._client.publish(self.state_topic(camera), json.dumps(state), qos=1, retain=True)
        self.published += 1

    def close(self) -> None:
        """A clean stop: ``offline``, then disconnect (a crash gets the same through the last will)."""
        info = self._client.publish(self.availability, OFFLINE, qos=1, retain=True)
        try:
            info.wait_for_publish(timeout=2.0)
        except (RuntimeError, ValueError):
            pass  # not connected: the broker's last will says offline for us
        self._client.loop_stop()
        self._client.disconnect()
