#!/usr/bin/env bash
# Debian's chromium for the dashboard's browser tests (tests/dashboard/test_browser.py drives
# it with Playwright's Python package; Playwright's own browser download cannot run here).
# Idempotent: installs only when /usr/bin/chromium is missing. Needs root (or sudo).
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
