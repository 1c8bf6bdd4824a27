"""The live loop's optional window: whether OpenCV can open one here, and showing a frame in it
(q or Esc ends the run)."""

from __future__ import annotations

import logging
import os
import threading

import numpy as np

from .stats import LiveStats

log = logging.getLogger("edge_classify.runtime")


def gui_available() -> tuple[bool, str]:
    """Whether a window can be shown, and if not, why (one line)."""
    import cv2

    info = cv2.getBuildInformation()
    gui_line = next((line for line in info.splitlines() if line.strip().startswith("GUI:")), "")
    if "NONE" in gui_line.upper() or not gui_line:
        return False, (
            "OpenCV here has no GUI support (opencv-python-headless); running headless. "
            "For a window: pip install 'edge-classify[gui]'"
        )
    if os.name != "nt" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display found (DISPLAY is not set); running headless"
    return True, ""


def show(window: str, frame: np.ndarray, stop: threading.Event, stats: LiveStats) -> bool:
    import cv2

    try:
        cv2.imshow(window, frame)
        key = cv2.waitKey(1) & 0xFF
    except cv2.error:
        log.warning("the window could not be shown; continuing headless")
        return False
    if key in (ord("q"), 27):
        stats.ended_by = "key"
        stop.set()
    return True
