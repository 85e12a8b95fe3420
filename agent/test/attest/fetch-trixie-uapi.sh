#!/bin/sh
# Downloads Debian 13's linux-libc-dev .deb (for <linux/tdx-guest.h>, which Debian 12 lacks) into
# /var/cache/cryptpilot-test for agent/test/attest/uapi.test.ts. apt runs with throw-away lists and
# sources under a temp dir: nothing is added to the machine's apt configuration or installed.
set -eu
dest=${1:-/var/cache/cryptpilot-test}
ls "$dest"/linux-libc-dev_*.deb >/dev/null 2>&1 && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$dest"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" >"$tmp/sources.list"
set -- -o Dir::Etc::SourceList="$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null \
  -o Dir::State::Lists="$tmp/lists" -o Dir::Cache="$tmp/cache" -o APT::Sandbox::User=root
apt-get "$@" -qq update
cd "$dest" && apt-get "$@" -qq download linux-libc-dev
