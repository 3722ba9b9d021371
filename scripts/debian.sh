#!/usr/bin/env bash
# Installs Debian packages for whichever of the given commands are missing:
#   scripts/debian.sh COMMAND=PACKAGE[,PACKAGE…] …
# Idempotent and quiet when every command is present. apt-get runs under a lock
# (WAC_APT_LOCK) because several checkouts on one machine may install at once.
set -euo pipefail
packages=()
for spec in "$@"; do
  if ! command -v "${spec%%=*}" >/dev/null 2>&1; then
    IFS=, read -r -a more <<< "${spec#*=}"
    packages+=("${more[@]}")
  fi
done
[ ${#packages[@]} -gt 0 ] || exit 0
echo "installing ${packages[*]} from Debian's packages" >&2
lock=${WAC_APT_LOCK:-/work/coord/apt.lock}
[ -d "$(dirname "$lock")" ] || lock=/tmp/wacampaigns-apt.lock
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
# A fresh machine (CI) has no package lists yet: update first, then install.
flock "$lock" $sudo apt-get update -qq -o DPkg::Lock::Timeout=600 >&2
flock "$lock" $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  -o DPkg::Lock::Timeout=600 "${packages[@]}" >&2
