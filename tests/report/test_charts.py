"""Charts: valid PNG and SVG bytes, the same bytes for the same publication, a readable placeholder when there is
nothing to draw."""

from __future__ import annotations

import datetime as dt
import io
import xml.etree.ElementTree as ET

import msgspec
import pytest
from PIL import Image
from report_data import small_publication

from netvigil.report.charts import CHARTS, render
from netvigil.report.dataset import Publication

UTC = dt.timezone.utc


@pytest.fixture(scope="module")
def pub() -> Publication:
    return small_publication()


def empty() -> Publication:
    return Publication(country="AZ", since=dt.datetime(2020, 9, 26, tzinfo=UTC),
                       until=dt.datetime(2020, 9, 27, tzinfo=UTC), generated_at=dt.datetime(2020, 9, 27, tzinfo=UTC),
                       notes={"cost": "incidents not priced: no data"})


@pytest.mark.parametrize("name", CHARTS)
def test_png_and_svg_are_valid_and_deterministic(pub, name):
    png = render(pub, name, "png")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as img:
        img.verify()
    assert render(pub, name, "png") == png
    svg = render(pub, name, "svg")
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert render(msgspec.structs.replace(pub), name, "svg") == svg
    assert b"<dc:date>" not in svg and b"matplotlib.org" not in svg


@pytest.mark.parametrize("name", CHARTS)
def test_nothing_to_draw_is_a_placeholder(name):
    svg = render(empty(), name, "svg")
    ET.fromstring(svg)
    assert render(empty(), name, "png").startswith(b"\x89PNG")


def test_unknown_chart_or_format():
    with pytest.raises(ValueError, match="unknown chart"):
        render(empty(), "pie")
    with pytest.raises(ValueError, match="unknown format"):
        render(empty(), "cost", "jpg")


def test_throughput_falls_back_to_the_throttled_share(pub):
    without = msgspec.structs.replace(pub, throughput=[])
    assert render(without, "throughput", "svg") != render(pub, "throughput", "svg")
