#!/usr/bin/env python3
"""Checks every link of a built HTML book: a relative link must name a file of the book and,
with a `#fragment`, an element of that page with that id. Links out of the book (http,
https, mailto) are counted, not fetched (the machines building Pulse reach no web).

    scripts/check_links.py BOOK_DIR
"""

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)
            if value and ((name == "href" and tag == "a") or (name == "src" and tag == "img")):
                self.links.append(value)


def main():
    book = Path(sys.argv[1]).resolve()
    pages = {}
    for path in book.rglob("*.html"):
        page = Page()
        page.feed(path.read_text(errors="replace"))
        pages[path] = page
    broken, outside, checked = [], 0, 0
    for path, page in sorted(pages.items()):
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith("//"):
                outside += 1
                continue
            checked += 1
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            where = path.relative_to(book)
            if not target.is_file() or book not in target.parents:
                broken.append(f"{where}: {link}: no such file in the book")
            elif parts.fragment and target in pages and unquote(parts.fragment) not in pages[target].ids:
                broken.append(f"{where}: {link}: no element with id {parts.fragment!r}")
    for problem in broken:
        print(f"broken link: {problem}", file=sys.stderr)
    print(f"links: {checked} in the book checked, {len(broken)} broken; {outside} out of it not fetched",
          file=sys.stderr)
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
