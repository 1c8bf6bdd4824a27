"""Teach from the live page (``--teach-dir DIR``): capture examples from a camera, teach, see it live.

The page's Teach panel and the JSON API (``POST /api/teach/...``, :mod:`edge_runtime.serve_http`)
call this one object:

- **capture** N frames over T seconds from one camera (the newest frames, spaced T/N apart so they
  differ) into ``DIR/<class>/``, laid out as ``edge-classify teach --examples`` reads them, so the
  same folder can be taught again anywhere. Frames are copied in the loop only when one is due and
  encoded and written by a thread of their own (temporary name, then rename);
- **examples**: each class's count and its newest thumbnails; **delete** one example;
- **teach**: the same code as ``edge-classify teach`` (head, "none of these" threshold, one file),
  in a thread, written atomically to ``--teach-output``, then swapped in between two frames by the
  model slot (:mod:`edge_runtime.swap`). A running model that is itself a taught file gets the new
  classes added (``teach --add``) only with ``--teach-add``; otherwise the taught model is new,
  and the file that was running is left as it was;
- **status**: what is being captured or taught, and the last error, in words.

One capture and one teach at a time; sizes and counts are bounded. Progress goes to ``/events``
(``event: teach``). Every error leaves the running model as it was.
"""

from __future__ import annotations

import base64
import logging
import os
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_common.cli import option

from .errors import EdgeError

log = logging.getLogger("edge_classify.runtime")

MAX_SHOTS = 50  # frames one capture takes
MAX_SECONDS = 60.0
MAX_EXAMPLES = 500  # a class's examples on disk
MAX_CLASSES = 50
THUMBNAILS = 8  # the newest examples of a class shown on the page
_NAME = re.compile(r"^[^<>&\"'`/\\\x00-\x1f\x7f]{1,60}$")


@dataclass
class TeachPanelOptions:
    """The live page's Teach panel (flags of ``python -m edge_runtime``; needs ``--serve``)."""

    teach_dir: str | None = option(
        help="show a Teach panel on the live page; captured examples go here as DIR/<class>/*.jpg", metavar="DIR"
    )
    teach_output: str | None = option(
        help="the taught file the page's Teach button writes and swaps in (default: DIR/taught.tflite)", metavar="FILE"
    )
    teach_add: bool = option(
        False, "add the page's classes to the running model (a taught file) instead of teaching a new one"
    )


class Busy(EdgeError):
    """Another capture or teach is running (the API answers 409)."""


class TeachPanel:
    """Examples on disk, the capture in progress, and the teach thread."""

    def __init__(
        self,
        options: TeachPanelOptions,
        slot: Any,
        open_options: dict[str, Any],
        publish: Callable[[dict[str, Any]], None] = lambda event: None,
    ) -> None:
        assert options.teach_dir is not None
        self.folder = Path(options.teach_dir).expanduser()
        self.output = Path(options.teach_output).expanduser() if options.teach_output else self.folder / "taught.tflite"
        self.add = options.teach_add
        self.slot, self.engine, self.publish = slot, open_options, publish
        # What --teach-add extends: the model running at start-up, every time (teaching again from the
        # folder gives the same file, however often the page taught before).
        self.base = slot.current.path
        self._check_start()
        self._lock = threading.Lock()
        self._capture: dict[str, Any] | None = None
        self._teaching = False
        self.last_error: str | None = None
        self.last_taught: dict[str, Any] | None = None
        self._writes: queue.Queue[tuple[Path, np.ndarray] | None] = queue.Queue(maxsize=MAX_SHOTS)
        self._writer = threading.Thread(target=self._write, name="teach-capture", daemon=True)
        self._writer.start()

    def _check_start(self) -> None:
        """Refuse at start-up what could only fail later: an output that is something else."""
        from .metadata import load_bytes, read_metadata

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgeError(f"--teach-dir {self.folder}: cannot create it ({exc.strerror or exc})") from None
        if self.output.suffix.lower() not in (".tflite", ".onnx"):
            raise EdgeError(f"--teach-output {self.output}: name it .tflite or .onnx")
        if self.output.exists():
            try:
                kind, data = load_bytes(self.output)
                taught = "taught" in read_metadata(kind, data, self.output).extra
            except EdgeError:
                taught = False
            if not taught:
                raise EdgeError(
                    f"--teach-output {self.output}: exists and is not a taught model; choose a new path "
                    "(the page's Teach button replaces that file)"
                )
        running = self.slot.current
        if running.path is not None and Path(running.path).resolve() == self.output.resolve():
            raise EdgeError(f"--teach-output {self.output} is the running --model; name another file")
        if self.add and "taught" not in running.metadata.extra:
            raise EdgeError(
                f"--teach-add extends a taught file; {running.metadata.model} is not one (leave out --teach-add "
                "to teach a new model beside it)"
            )

    # -- capture -------------------------------------------------------------------------------

    def capture(self, name: Any, shots: Any, seconds: Any, camera: Any, cameras: list[str]) -> dict[str, Any]:
        """Start capturing ``shots`` frames of ``camera`` over ``seconds`` as class ``name``."""
        name = check_name(name)
        shots = _number(shots, "count", 1, MAX_SHOTS, whole=True)
        seconds = _number(seconds, "seconds", 0.0, MAX_SECONDS)
        if camera is None:
            camera = cameras[0]
        if camera not in cameras:
            raise EdgeError(f"no camera named {str(camera)[:40]!r}; the page lists them")
        folder = self.folder / name
        existing = len(_images(folder))
        if existing + shots > MAX_EXAMPLES:
            raise EdgeError(f"{name!r} has {existing} examples; at most {MAX_EXAMPLES} a class: delete some first")
        if not folder.is_dir() and len(self.classes()) >= MAX_CLASSES:
            raise EdgeError(f"at most {MAX_CLASSES} classes on the page; delete a class's examples first")
        with self._lock:
            if self._capture is not None:
                raise Busy(f"already capturing {self._capture['name']!r}; wait for it to finish")
            self._capture = {
                "name": name, "camera": camera, "left": shots, "taken": 0, "shots": shots,
                "every": seconds / shots, "next": time.monotonic(),
            }  # fmt: skip
        self.last_error = None
        self.publish({"type": "teach", "state": "capturing", "class": name, "camera": camera, "taken": 0, "of": shots})
        return self.status()

    def frame(self, camera: str, frame: np.ndarray) -> None:
        """The loop's newest raw frame of ``camera``: taken when a capture is due (cheap otherwise)."""
        capture = self._capture
        if capture is None or capture["camera"] != camera or time.monotonic() < capture["next"]:
            return
        with self._lock:
            capture = self._capture
            if capture is None:
                return
            capture["next"] = time.monotonic() + capture["every"]
            capture["left"] -= 1
            index = capture["taken"] = capture["taken"] + 1
            if capture["left"] <= 0:
                self._capture = None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self.folder / capture["name"] / f"{stamp}-{os.getpid()}-{index:03d}-{time.monotonic_ns() % 10**6}.jpg"
        try:
            self._writes.put_nowait((path, frame.copy()))
        except queue.Full:
            log.warning("teach capture: the disk is slower than the captures; a frame was skipped")
        self.publish(
            {"type": "teach", "state": "capturing" if capture["left"] > 0 else "captured", "class": capture["name"],
             "camera": camera, "taken": index, "of": capture["shots"]}
        )  # fmt: skip

    def _write(self) -> None:
        import cv2

        try:  # Linux schedules threads apart: encoding and saving yield to the loop's inference
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        while True:
            item = self._writes.get()
            if item is None:
                return
            path, frame = item
            temp = path.with_name(f".{path.name}.partial.jpg")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
                if not ok:
                    raise OSError("the frame could not be encoded")
                with open(temp, "wb") as handle:
                    handle.write(jpeg.tobytes())
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temp, path)
                self.publish({"type": "teach", "state": "saved", "class": path.parent.name, "file": path.name})
            except OSError as exc:
                temp.unlink(missing_ok=True)
                with self._lock:
                    self._capture = None
                self.last_error = (
                    f"the example could not be saved ({exc.strerror or exc}): the disk is full or not writable; "
                    "free some space, then capture again"
                )
                self.publish({"type": "teach", "state": "error", "error": self.last_error})

    # -- examples ------------------------------------------------------------------------------

    def classes(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def examples(self) -> dict[str, Any]:
        """Each class's count and its newest thumbnails (64 px JPEGs as data URLs)."""
        out = []
        for name in self.classes():
            files = _images(self.folder / name)
            out.append(
                {"class": name, "count": len(files),
                 "thumbnails": [{"file": f.name, "jpeg": _thumbnail(f)} for f in files[-THUMBNAILS:]]}
            )  # fmt: skip
        return {"classes": out, "folder": str(self.folder)}

    def delete(self, name: Any, file: Any) -> dict[str, Any]:
        name = check_name(name)
        if not isinstance(file, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,120}", file) or file.startswith("."):
            raise EdgeError("file: the name of one example, as the list gives it")
        path = self.folder / name / file
        if not path.is_file():
            raise EdgeError(f"{name}/{file}: no such example")
        path.unlink()
        if not any(path.parent.iterdir()):
            path.parent.rmdir()  # the class's last example: the class goes too
        return self.examples()

    # -- teaching ------------------------------------------------------------------------------

    def teach(self) -> dict[str, Any]:
        """Start teaching from the examples folder in a thread; the new file is swapped in when done."""
        from .teach.taught import RECOMMENDED_SHOTS

        counts = {name: len(_images(self.folder / name)) for name in self.classes()}
        counts = {name: n for name, n in counts.items() if n}
        wanted = 1 if self.add else 2
        if len(counts) < wanted:
            raise EdgeError(
                f"teaching needs examples of at least {wanted} classes; capture some first"
                + ("" if self.add else " (two or more things to tell apart)")
            )
        few = [f"{name} ({n})" for name, n in counts.items() if n < RECOMMENDED_SHOTS]
        if few:
            raise EdgeError(f"too few examples: {', '.join(few)}; capture at least {RECOMMENDED_SHOTS} of each class")
        with self._lock:
            if self._teaching:
                raise Busy("already teaching; wait for it to finish")
            self._teaching = True
        self.last_error = None
        self.publish({"type": "teach", "state": "teaching", "classes": counts})
        threading.Thread(target=self._teach, args=(counts,), name="teach", daemon=True).start()
        return self.status()

    def _teach(self, counts: dict[str, int]) -> None:
        from .accelerators import EngineOptions
        from .teach.command import TeachOptions, teach_file

        started = time.perf_counter()
        try:
            options = TeachOptions(
                output=str(self.output),
                examples=str(self.folder),
                add=str(self.base) if self.add else None,
                replace=self.add,
                overwrite=True,
                quiet=True,
            )
            summary = teach_file(options, EngineOptions(**self.engine))
        except Exception as exc:  # every failure is reported in words; the old model keeps running
            self.last_error = f"teaching failed: {exc}" if not isinstance(exc, EdgeError) else str(exc)
            if isinstance(exc, OSError):
                self.last_error = f"teaching failed ({exc.strerror or exc}): is the disk full?"
            log.warning("%s; the running model is unchanged", self.last_error)
            self.publish({"type": "teach", "state": "error", "error": self.last_error})
            return
        finally:
            with self._lock:
                self._teaching = False
        self.last_taught = {**summary, "seconds": round(time.perf_counter() - started, 2), "file": str(self.output)}
        self.slot.request(self.output, "taught on the live page")
        self.publish({"type": "teach", "state": "taught", **self.last_taught})

    def status(self) -> dict[str, Any]:
        with self._lock:
            capture = dict(self._capture) if self._capture else None
            teaching = self._teaching
        if capture:
            capture = {k: capture[k] for k in ("name", "camera", "taken", "shots")}
        return {
            "capturing": capture,
            "teaching": teaching,
            "error": self.last_error,
            "taught": self.last_taught,
            "model": self.slot.current.metadata.model,
            "labels": list(self.slot.current.labels),
            "output": str(self.output),
        }

    def close(self) -> None:
        self._writes.put(None)
        self._writer.join(5)


def check_name(name: Any) -> str:
    """A class name the page may create: not empty, no path, no markup, no control characters."""
    if not isinstance(name, str) or not name.strip():
        raise EdgeError("class: type a name for the class")
    name = name.strip()
    if name in (".", "..") or not _NAME.match(name):
        raise EdgeError(
            f"class {name[:40]!r}: use letters, digits, spaces and - _ . only (no / \\ < > & quotes), "
            "at most 60 characters"
        )
    return name


def _number(value: Any, what: str, low: float, high: float, whole: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not float(value).is_integer()):
        raise EdgeError(f"{what}: a {'whole ' if whole else ''}number from {low:g} to {high:g}")
    if not low <= value <= high:
        raise EdgeError(f"{what}: {value:g} is outside {low:g} to {high:g}")
    return int(value) if whole else float(value)


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.jpg") if not p.name.startswith("."))


def _thumbnail(path: Path) -> str:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_REDUCED_COLOR_4)
    if image is None:
        return ""
    scale = 64 / max(image.shape[:2])
    small = cv2.resize(image, (max(1, int(image.shape[1] * scale)), max(1, int(image.shape[0] * scale))))
    ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode() if ok else ""
