#!/usr/bin/env bash
# Installs Debian's headless browser for the selenium tests (chromium + chromium-driver) when
# either is missing.
exec "$(dirname "$0")/debian.sh" chromium=chromium chromedriver=chromium-driver
