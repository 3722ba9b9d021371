#!/usr/bin/env bash
# Installs Debian's headless browser for the selenium tests (chromium + chromium-driver) when
# either is missing. Idempotent and quiet when both are present. apt-get runs under a lock
# (WAC_APT_LOCK) because several checkouts on one machine may install at once.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
echo "installing chromium and chromium-driver for the browser tests" >&2
lock=${WAC_APT_LOCK:-/work/coord/apt.lock}
[ -d "$(dirname "$lock")" ] || lock=/tmp/wacampaigns-apt.lock
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
install() {
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    -o DPkg::Lock::Timeout=600 chromium chromium-driver
}
# A fresh machine (CI) has no package lists yet: update first, then install.
flock "$lock" sh -c "$sudo apt-get update -qq -o DPkg::Lock::Timeout=600" >&2
flock "$lock" bash -c "$(declare -f install); sudo='$sudo'; install" >&2
