#!/usr/bin/env python3
"""Reads the EarlyExitMeta that the `earlyexit` element attaches to each frame, from Python,
in a pad probe, and the element's `stats` at the end: the Python twin of read_meta.rs.

    python3 examples/read_meta.py BUNDLE MEDIA

BUNDLE is an exits.yaml or its folder; MEDIA is a file path or a URI. Needs PyGObject with
GStreamer's Python overrides (Debian: python3-gi python3-gst-1.0, which scripts/setup.sh
installs) and the plugin where GStreamer finds it (scripts/setup.sh installs it; or set
GST_PLUGIN_PATH to the folder holding libgstearlyexit.so).

Reading `stats`' `exits` (a GstValueArray): with python3-gst-1.0, `Structure.get_value`
returns it as a Gst.ValueArray, which is a list. Without those overrides, get_value raises
"unknown type GstValueArray", and the way left, `get_array`, goes through the deprecated
GObject.ValueArray; this script says so instead.
"""

import os
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402


def uri_of(media):
    if "://" in media:
        return media
    return Gst.filename_to_uri(os.path.abspath(media))


def on_frame(pad, info, rows):
    """Pad probe on the element's src pad: one row per buffer, from its first EarlyExitMeta
    (the first earlyexit element's; a buffer carries one per element)."""
    buffer = info.get_buffer()
    meta = buffer.get_custom_meta("EarlyExitMeta")
    frame = len(rows)
    if meta is None:
        rows.append(None)
        print(f"{frame:>5}  (no EarlyExitMeta)")
        return Gst.PadProbeReturn.OK
    s = meta.get_structure()
    # Optional fields: `label` only with a labelled bundle, `cost` only with MACs counts.
    label = s.get_string("label") or ""
    has_cost, cost = s.get_double("cost")
    row = {
        "stage": s.get_uint("stage")[1],
        "class-id": s.get_int("class-id")[1],
        "label": label,
        "confidence": s.get_double("confidence")[1],
        "reused": s.get_uint("reused")[1],
    }
    rows.append(row)
    cost_text = f"{cost:.3f}" if has_cost else "-"
    print(
        f"{frame:>5}  {row['stage']:>5}  {row['class-id']:>5}  {label:<20}  "
        f"{row['confidence']:>10.4f}  {cost_text:<6}  {row['reused']}"
    )
    return Gst.PadProbeReturn.OK


def exits_of(stats):
    """`stats`' per-stage counts as a list of ints."""
    try:
        return [int(n) for n in stats.get_value("exits")]
    except TypeError as error:
        sys.exit(
            f"read_meta.py: cannot read stats.exits ({error}): install GStreamer's Python "
            "overrides (Debian: apt-get install python3-gst-1.0)"
        )


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: read_meta.py BUNDLE MEDIA   (BUNDLE: exits.yaml or its folder)")
    bundle, media = argv[1], argv[2]
    Gst.init(None)
    if Gst.ElementFactory.find("earlyexit") is None:
        sys.exit(
            "read_meta.py: GStreamer has no 'earlyexit' element: install the plugin "
            "(scripts/setup.sh) or set GST_PLUGIN_PATH to the folder of libgstearlyexit.so"
        )
    pipeline = Gst.parse_launch(
        "uridecodebin name=decode ! videoconvert ! earlyexit name=ee ! fakesink sync=false"
    )
    pipeline.get_by_name("decode").set_property("uri", uri_of(media))
    earlyexit = pipeline.get_by_name("ee")
    earlyexit.set_property("model", bundle)
    rows = []
    earlyexit.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, on_frame, rows)

    print("frame  stage  class  label                 confidence  cost    reused")
    pipeline.set_state(Gst.State.PLAYING)
    message = pipeline.get_bus().timed_pop_filtered(
        Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR
    )
    pipeline.set_state(Gst.State.NULL)
    if message.type == Gst.MessageType.ERROR:
        error, _debug = message.parse_error()
        sys.exit(f"read_meta.py: {error.message}")

    # The counts are kept after the pipeline stops.
    stats = earlyexit.get_property("stats")
    print(f"\n{stats.get_uint64('frames')[1]} frames; left at each stage: {exits_of(stats)}")
    has_cost, cost = stats.get_double("mean-cost")
    if has_cost:
        print(f"mean cost: {cost:.3f} of the backbone")
    print(f"mean inference: {stats.get_uint64('mean-inference-ns')[1] / 1e6:.2f} ms")


if __name__ == "__main__":
    main(sys.argv)
