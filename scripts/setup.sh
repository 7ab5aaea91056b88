#!/usr/bin/env bash
# Install everything the tests and the demo need on a fresh Debian 12 machine (run as root):
# Debian packages for the sandbox host and the tools the tests drive, and a virtualenv with the
# package and its test and lint extras. Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
APT_PACKAGES=(debootstrap systemd-container eatmydata zstd iproute2 openssh-client openssh-server logrotate
              python3-venv procps sudo libfaketime e2fsprogs)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating the virtualenv $VENV"
  python3 -m venv "$VENV"
fi
stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  echo "setup: installing jada-agent with its test and lint extras"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -e '.[test,lint]'
  rm -f "$VENV"/.installed-* && touch "$stamp"
fi
