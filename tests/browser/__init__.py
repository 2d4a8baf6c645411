"""The JavaScript client in a real browser (Debian's chromium, driven by Playwright)."""
