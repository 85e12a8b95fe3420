#!/bin/sh
# Waits up to 60 s for the flag that cryptpilot-network-online.sh sets. It never fails: the key
# provider then reports the real problem (which server could not be reached).
i=0
while [ ! -e /run/cryptpilot/network-online ]; do
  if [ "$i" -ge 60 ]; then
    echo "cryptpilot-fde: no network interface came online within 60 s; continuing"
    exit 0
  fi
  sleep 1
  i=$((i + 1))
done
exit 0
