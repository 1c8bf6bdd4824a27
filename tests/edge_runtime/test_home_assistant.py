"""Home Assistant's MQTT discovery against a real Mosquitto: retained configs with the documented
keys, state and attributes as events arrive, the last will on SIGKILL, and removal of what is gone."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys

import paho.mqtt.client as paho
import pytest

from benchmarks.ipcamera import IPCamera
from tests.edge_runtime.garments import MODEL, photos, write_video
from tests.helpers import wait_for

LABELS = ("dress", "hat", "longsleeve", "outwear", "pants", "shirt", "shoes", "shorts", "skirt", "t-shirt")
# The keys Home Assistant's MQTT sensor and binary sensor document for discovery.
DOCUMENTED = {
    "name", "unique_id", "state_topic", "value_template", "availability_topic", "payload_available",
    "payload_not_available", "device", "json_attributes_topic", "icon", "payload_on", "payload_off",
}  # fmt: skip
DEVICE_KEYS = {"identifiers", "name", "model", "manufacturer", "sw_version"}


@pytest.fixture
def broker(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "broker.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    process = subprocess.Popen(
        [mosquitto, "-c", str(tmp_path / "broker.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    assert wait_for(up, 20), "mosquitto did not start"
    yield port
    process.terminate()
    process.wait(10)


class Retained:
    """Every message on ``topics`` (retained ones included) as the broker has them now."""

    def __init__(self, port: int, *topics: str) -> None:
        self.messages: dict[str, bytes] = {}
        self.log: list[tuple[str, bytes]] = []
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on
        self.client.connect("127.0.0.1", port)
        for topic in topics:
            self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def _on(self, _client, _userdata, message) -> None:
        self.messages[message.topic] = message.payload
        self.log.append((message.topic, message.payload))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _run(port: int, *sources: str) -> subprocess.Popen:
    args = [a for source in sources for a in ("--source", source)]
    return subprocess.Popen(
        [sys.executable, "-m", "edge_runtime", "--headless", "--quiet", "--model", str(MODEL), *args,
         "--mqtt", f"mqtt://127.0.0.1:{port}/edge/events", "--ha-discovery", "--ha-node", "shop",
         "--event-frames", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def test_discovery_state_last_will_and_removal_against_a_real_broker(broker, tmp_path):
    door = IPCamera(write_video(tmp_path / "door.mp4", [(photos("shoes", 1)[0], 20), (photos("pants", 1)[0], 20)]))
    rack = IPCamera(write_video(tmp_path / "rack.mp4", [(photos("t-shirt", 1)[0], 40)]))
    seen = Retained(broker, "homeassistant/#", "edge_classify/#")
    process = _run(broker, f"door={door.url}", f"rack={rack.url}")
    try:
        assert wait_for(lambda: seen.messages.get("edge_classify/shop/availability") == b"online", 60)
        assert wait_for(lambda: len([t for t in seen.messages if t.endswith("/config")]) == 2 * (1 + len(LABELS)), 30)
        # State as events arrive: the door sees shoes and pants in turn (a 4 s loop at 10 FPS).
        assert wait_for(
            lambda: (
                {json.loads(p)["label"] for t, p in seen.log if t == "edge_classify/shop/door/state"}
                >= {"shoes", "pants"}
            ),
            60,
        )
        process.send_signal(signal.SIGKILL)  # no clean exit: the broker's last will says offline
        process.wait(10)
        assert wait_for(lambda: seen.messages.get("edge_classify/shop/availability") == b"offline", 30)
    finally:
        process.kill()
    configs = {t: json.loads(p) for t, p in seen.messages.items() if t.endswith("/config") and p}
    sensor = configs["homeassistant/sensor/shop/door_label/config"]
    assert set(sensor) <= DOCUMENTED and set(sensor["device"]) == DEVICE_KEYS
    assert sensor["unique_id"] == "shop_door_label" and sensor["state_topic"] == "edge_classify/shop/door/state"
    assert (
        sensor["json_attributes_topic"] == sensor["state_topic"]
        and sensor["value_template"] == "{{ value_json.label }}"
    )
    assert sensor["availability_topic"] == "edge_classify/shop/availability"
    assert (sensor["payload_available"], sensor["payload_not_available"]) == ("online", "offline")
    shoes = configs["homeassistant/binary_sensor/shop/door_shoes/config"]
    assert set(shoes) <= DOCUMENTED and shoes["unique_id"] == "shop_door_shoes" and shoes["payload_on"] == "ON"
    assert shoes["value_template"] == "{{ 'ON' if value_json.label == \"shoes\" else 'OFF' }}"
    assert configs["homeassistant/sensor/shop/rack_label/config"]["device"]["identifiers"] == ["shop_rack"]
    state = json.loads(seen.messages["edge_classify/shop/door/state"])
    assert set(state) == {"label", "score", "previous", "frame", "time", "model"} and state["model"] == "clothes_lite0"

    # The rack camera is gone from the next run: its retained configs are cleared, the door's stay.
    process = _run(broker, f"door={door.url}")
    try:
        assert wait_for(lambda: seen.messages.get("homeassistant/sensor/shop/rack_label/config") == b"", 60)
        assert wait_for(lambda: seen.messages.get("edge_classify/shop/availability") == b"online", 30)
        process.send_signal(signal.SIGTERM)
        stderr = process.communicate(timeout=30)[1]
    finally:
        process.kill()
        door.close()
        rack.close()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert all(seen.messages[t] == b"" for t in seen.messages if "/shop/rack_" in t)
    assert seen.messages["homeassistant/sensor/shop/door_label/config"] != b""
    assert seen.messages["edge_classify/shop/availability"] == b"offline"  # a clean stop says so too
    seen.close()
