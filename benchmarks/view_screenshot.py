"""Check `vla-data view --serve` in a real browser: serve a store's episodes, load the printed URL in headless
Chromium, wait for the viewer to draw, and save a screenshot.

Reproduce (needs Playwright, and a Chromium: the system's, e.g. `apt-get install chromium`, or Playwright's
own, `playwright install chromium`; CI has neither, so this is a check script, not a test). After `make demo`:

    pip install playwright==1.65.2   # into any Python; it drives the browser only
    python benchmarks/view_screenshot.py demo-out/dataset.zarr --run demo-out/run --chromium /usr/bin/chromium \
        --out docs/view.png

The viewer draws with WebGL on Chromium's software rasterizer (SwiftShader): no GPU or display is needed.

It exits 1 when the page does not load or the viewer draws no canvas within --timeout seconds.
"""

from __future__ import annotations

import argparse
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", help="a store (folder or URL) or episodes, as for `vla-data view`")
    parser.add_argument("--out", type=Path, default=Path("bench-out/view.png"))
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--run", default=None, help="a run or checkpoint: show its predictions too")
    parser.add_argument("--chromium", default=None, help="a Chromium executable [default: Playwright's own]")
    parser.add_argument("--vla-data", default=str(Path(sys.executable).with_name("vla-data")),
                        help="the vla-data command [default: beside this Python]")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("this check needs Playwright: pip install playwright==1.65.2 && playwright install chromium")
    cmd = [args.vla_data, "view", args.store, "--serve", "--web-port", str(free_port()), "--grpc-port",
           str(free_port()), "--max-episodes", str(args.episodes), *(["--run", args.run] if args.run else [])]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        found = re.search(r"open (http://127\.0\.0\.1:\d+/\S+)", line)
        if not found:
            raise SystemExit(f"vla-data view --serve printed no URL: {line!r}")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=[
                "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"])
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.goto(found.group(1), timeout=args.timeout * 1000)
            page.wait_for_selector("canvas", timeout=args.timeout * 1000)
            page.wait_for_timeout(20000)  # the wasm viewer compiles, connects, receives the recording, lays it out
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            browser.close()
        print(f"wrote {args.out} from {found.group(1)}")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
