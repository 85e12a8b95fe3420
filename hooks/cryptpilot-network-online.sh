#!/bin/sh
# dracut initqueue/online hook: runs once an interface is configured (dhclient got a lease).
mkdir -p /run/cryptpilot
: >/run/cryptpilot/network-online
