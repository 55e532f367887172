#!/usr/bin/env bash
# CI: make sure Debian's Chromium is installed for tests/test_browser.py (Playwright drives it through
# executable_path=/usr/bin/chromium; `playwright install` is never needed). Idempotent: does nothing when it is there.
# `apt-get update` runs only if the install fails with the current package lists.
set -euo pipefail
chromium=/usr/bin/chromium
if [ -x "$chromium" ]; then
  echo "browser-deps: $chromium already installed ($("$chromium" --version 2>/dev/null || echo 'version unknown'))"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo=(sudo); else
    echo "browser-deps: not root and no sudo: cannot install chromium" >&2; exit 1; fi
else
  sudo=()
fi
export DEBIAN_FRONTEND=noninteractive
echo "browser-deps: apt-get install -y chromium"
if ! "${sudo[@]}" apt-get install -y chromium; then
  echo "browser-deps: install failed; apt-get update, then install again"
  "${sudo[@]}" apt-get update
  "${sudo[@]}" apt-get install -y chromium
fi
echo "browser-deps: installed $("$chromium" --version)"
