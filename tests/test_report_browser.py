"""The report as a browser shows it. The digits example (4 epochs) and the wine example, both
with the legacy exporter, are built and reported once (two `s2build report` processes side
by side), then each page is opened once in headless Chromium (`/usr/bin/chromium`, the Debian
package; `.ci/run` installs it, and these tests skip without it). Checked: the DOM Chromium
built holds the loss curves, the confusion matrix, the spec table and, for the images of
digits, thumbnails as PNG data URIs; the screenshot is not blank; Chromium logged no console
message; the page made no network request (Chromium's net log), nor names any http(s) URL.
A page with a script error and a remote image shows that the last two checks can fail."""

import base64
import io
import json
import os
import re
import subprocess
import sys
import time
from html.parser import HTMLParser

import pytest

from conftest import copy_example

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--window-size=1000,2000"]

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"headless Chromium is not installed ({CHROMIUM}: the Debian package 'chromium'; "
           ".ci/run installs it)")


class Dom(HTMLParser):
    """What the checks read of the DOM: charts by title, their polylines, images, the
    confusion matrix's counts and the spec rows."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.charts, self.imgs, self.counts, self.spec_rows = {}, [], [], 0
        self.chart = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg":
            self.chart = self.charts.setdefault(a.get("aria-label", ""), [])
        elif tag == "polyline" and self.chart is not None:
            self.chart.append(len((a.get("points") or "").split()))
        elif tag == "img":
            self.imgs.append(a.get("src") or "")
        elif tag == "td" and "data-count" in a:
            self.counts.append(int(a["data-count"]))
        elif tag == "tr" and a.get("class") == "spec":
            self.spec_rows += 1

    def handle_endtag(self, tag):
        if tag == "svg":
            self.chart = None


def open_in_chromium(page, out):
    """Open file `page` once: (DOM text, screenshot path, console lines, the page's own
    requests from the net log)."""
    out.mkdir()
    shot, netlog = out / "shot.png", out / "net.json"
    p = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={out / 'profile'}",
                        f"--screenshot={shot}", f"--log-net-log={netlog}", "--dump-dom",
                        page.as_uri()], capture_output=True, text=True, timeout=90,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr[-3000:]
    console = [line for line in p.stderr.splitlines() if re.search(r"CONSOLE[:(]", line)]
    return p.stdout, shot, console, page_requests(netlog)


def page_requests(netlog):
    """URLs the page asked the network stack for: URL requests started with the page as
    initiator or in its file:// partition (Chromium's own background requests, which the
    flags do not all stop, have no origin)."""
    text = netlog.read_text()
    try:
        log = json.loads(text)
    except ValueError:                                  # cut short: close the event list
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    kind = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    found = []
    for e in log["events"]:
        params = e.get("params") or {}
        if kind.get(e.get("type")) != "URL_REQUEST_START_JOB" or "url" not in params:
            continue
        url = str(params["url"])
        mine = params.get("initiator") != "not an origin" or \
            "file://" in str(params.get("network_isolation_key", ""))
        if mine and not url.startswith(("file:", "data:")):
            found.append(url)
    return found


def not_blank(shot):
    from PIL import Image, ImageStat
    with Image.open(shot) as im:
        gray = im.convert("L")
        colours = im.convert("RGB").getcolors(maxcolors=1 << 16)
        return ImageStat.Stat(gray).stddev[0], len(colours) if colours else 1 << 16


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """{example: (project, page, seconds of its `s2build report`)}, both reported at once."""
    root = tmp_path_factory.mktemp("browser")
    runs = {}
    for name, edit in (("digits", ("epochs: 15", "epochs: 4")), ("wine", ("", ""))):
        d = copy_example(name, root / name)
        y = d / "s2build.yaml"
        y.write_text(y.read_text().replace(*edit).replace(
            f"    output: build/{name}.onnx",
            f"    export: {{exporter: legacy}}\n    output: build/{name}.onnx"))
        runs[name] = (d, time.perf_counter(), subprocess.Popen(
            [sys.executable, "-m", "s2build", "--no-server", "report"], cwd=d, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONUNBUFFERED="1")))
    out = {}
    for name, (d, started, p) in runs.items():
        text, _ = p.communicate(timeout=300)
        assert p.returncode == 0, text
        out[name] = (d, d / "build" / "report.html", time.perf_counter() - started)
    return out


@pytest.mark.parametrize("name", ["digits", "wine"])
def test_the_page_in_chromium(pages, name, tmp_path):
    d, page, _seconds = pages[name]
    html = page.read_text()
    assert not re.search(r"https?://", html) and "<script" not in html and "<link" not in html
    dom_text, shot, console, requests = open_in_chromium(page, tmp_path / "chromium")
    assert console == [] and requests == []
    dom = Dom()
    dom.feed(dom_text)
    facts = json.loads((d / "build" / f"{name}.onnx.json").read_text())
    epochs = len(facts["history"])
    assert dom.charts["loss per epoch"] == [epochs, epochs]       # training and holdout loss
    assert dom.charts["holdout accuracy per epoch"] == [epochs]
    classes = {"digits": 10, "wine": 3}[name]
    assert len(dom.counts) == classes ** 2 and sum(dom.counts) == facts["rows"]["holdout"]
    assert dom.spec_rows == 5                                      # both examples have 5
    if name == "digits":
        assert 1 <= len(set(dom.imgs)) <= 48 and all(
            s.startswith("data:image/png;base64,") for s in dom.imgs)
        from PIL import Image
        with Image.open(io.BytesIO(base64.b64decode(dom.imgs[0].split(",", 1)[1]))) as im:
            assert im.size == (64, 64)                             # an 8x8 digit, enlarged
    else:
        assert dom.imgs == []                                     # a table: its cells
        assert "alcohol=" in dom_text
    spread, colours = not_blank(shot)
    assert spread > 10 and colours > 16, (spread, colours)


def test_the_console_and_network_checks_can_fail(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><p>x</p><script>console.error("boom"); '
                   'no_such_function();</script><img src="http://example.invalid/x.png">'
                   "</body></html>")
    _dom, _shot, console, requests = open_in_chromium(bad, tmp_path / "chromium")
    assert any("boom" in line for line in console)
    assert any("no_such_function" in line for line in console)
    assert requests == ["http://example.invalid/x.png"]
