#!/bin/sh
# Writes /etc/resolv.conf in a systemd-networkd initrd, which has no resolver configuration of its
# own (no systemd-resolved, no resolv.conf): the agent resolves key broker host names (KBS URLs,
# <kst-id>.cryptoservice.kms.aliyuncs.com, sts.<region>.aliyuncs.com) through it. The servers are
# the ones networkd applied to its links (DHCP lease, or DNS= of a .network file; UseDNS=no is
# honoured), read from its link state files. An existing resolv.conf (e.g. systemd-resolved's stub
# when the image's dracut adds that module) is left alone. Never fails: without a server the key
# provider names the host it could not resolve.
conf=/etc/resolv.conf
if [ -e "$conf" ] || [ -L "$conf" ]; then
  exit 0
fi

# DNS= entries: plain addresses, or with :port, %ifindex or #server-name (glibc knows none of
# these except an IPv6 zone); DOMAINS= are search domains.
collect() {
  servers=""
  search=""
  for f in /run/systemd/netif/links/*; do
    [ -f "$f" ] || continue
    for s in $(sed -n 's/^DNS=//p' "$f"); do
      s=${s%%#*}
      case $s in
        *.*:* | *:*.* | *[!0-9a-fA-F:.%]*) continue ;;
      esac
      case " $servers " in *" $s "*) ;; *) servers="$servers $s" ;; esac
    done
    for d in $(sed -n 's/^DOMAINS=//p' "$f"); do
      case " $search " in *" $d "*) ;; *) search="$search $d" ;; esac
    done
  done
}

# network-online.target (which this unit is ordered before) already waited for the DHCP lease;
# the retries only cover a link whose state file is written a moment later.
i=0
collect
while [ -z "$servers" ] && [ "$i" -lt 5 ]; do
  sleep 1
  i=$((i + 1))
  collect
done
if [ -z "$servers" ]; then
  echo "cryptpilot-fde: no DNS server from systemd-networkd (DHCP); host names in key provider URLs will not resolve"
  exit 0
fi

{
  echo "# written by cryptpilot-resolv-conf.sh from systemd-networkd's link state"
  [ -n "$search" ] && echo "search$search"
  for s in $servers; do echo "nameserver $s"; done
} >"$conf.tmp" && mv "$conf.tmp" "$conf"
echo "cryptpilot-fde: /etc/resolv.conf: nameserver$servers${search:+ (search$search)}"
exit 0
