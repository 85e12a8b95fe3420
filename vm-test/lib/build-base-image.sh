#!/usr/bin/env bash
# Builds a cached Debian test guest: vm-test/cache/base-<suite>[-arm64]-<key>/{disk.raw,vmlinuz,initrd.img,kver}.
#   build-base-image.sh [SUITE [ARCH]]   SUITE: bookworm (Debian 12, the default) or trixie (Debian 13)
#                                        ARCH: amd64 (the default) or arm64 (needs binfmt_misc for
#                                        qemu-aarch64 on the host: the package scripts and dracut run
#                                        in the arm64 root under qemu-user)
#   disk.raw: GPT, partition 1 = ESP (FAT32: Debian's signed shim + GRUB, a grub.cfg that loads
#   /boot/grub/grub.cfg from the root filesystem), partition 2 = ext4 labelled "root" (the whole
#   guest, with a stock dracut initrd in /boot). That is what `cryptpilot-fde convert --in` takes.
# The key is a hash of this script and vm-test/guest/*, so editing either rebuilds the image.
# Debian packages only, from the host's configured apt mirror (any suite the mirror serves, whatever
# the host runs). Prints the cache directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
vmtest=$(dirname "$here")
cache=${CPTEST_CACHE:-$vmtest/cache}

suite=${1:-bookworm}
case $suite in
bookworm | trixie) ;;
*) echo "build-base-image.sh: unknown suite '$suite' (bookworm or trixie)" >&2; exit 2 ;;
esac
arch=${2:-amd64}
# Per architecture: the EFI names (shim<efi>.efi, grub<efi>.efi, BOOT<EFI>.EFI), GRUB's platform
# directory, and the serial console QEMU's machine has (x86 PC: 8250 ttyS0; arm64 virt: PL011 ttyAMA0).
case $arch in
amd64) efi=x64 grubdir=x86_64-efi-signed tty=ttyS0 name=$suite ;;
arm64) efi=aa64 grubdir=arm64-efi-signed tty=ttyAMA0 name=$suite-arm64 ;;
*) echo "build-base-image.sh: unknown architecture '$arch' (amd64 or arm64)" >&2; exit 2 ;;
esac
key=$(cat "$0" "$vmtest"/guest/* | sha256sum | cut -c1-16)
out=$cache/base-$name-$key
if [ -f "$out/done" ]; then echo "$out"; exit 0; fi
if [ "$arch" != "$(dpkg --print-architecture)" ] && ! grep -qx enabled "/proc/sys/fs/binfmt_misc/qemu-${arch/arm64/aarch64}" 2>/dev/null; then
  echo "build-base-image.sh: an $arch root needs binfmt_misc for qemu-${arch/arm64/aarch64} (qemu-user-static; vm-test/lib/binfmt.ts registers it)" >&2
  exit 1
fi

mkdir -p "$cache"
exec 9>"$cache/.build-$name.lock"
flock 9
if [ -f "$out/done" ]; then echo "$out"; exit 0; fi

log() { echo "[base-image] $*" >&2; }
work=$(mktemp -d "$cache/.build-XXXXXX")
root=$work/root
mounts=()
cleanup() {
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Guest packages. dracut-network + isc-dhcp-client: initrd network for network key providers;
# lz4: the initrd compression the cryptpilot module picks; cloud-guest-utils: growpart;
# systemd-boot-efi + binutils: `dracut --uefi` (UKI) inside the guest root; libtss2-*: the
# agent's TPM access (tpm2 provider, TPM evidence for KBS; trixie's are the 64-bit time_t "t64" builds).
packages=(
  linux-image-$arch systemd systemd-sysv udev kmod dbus
  dracut dracut-core dracut-network isc-dhcp-client
  cryptsetup-bin lvm2 dmsetup e2fsprogs cloud-guest-utils fdisk util-linux mount procps
  lz4 zstd ca-certificates iproute2 less systemd-boot-efi binutils
)
case $suite in
bookworm) packages+=(libtss2-esys-3.0.2-0 libtss2-tctildr0 libtss2-tcti-device0 libtss2-rc0) ;;
trixie) packages+=(libtss2-esys-3.0.2-0t64 libtss2-tctildr0t64 libtss2-tcti-device0t64 libtss2-rc0t64) ;;
esac

# Mirrors: the hosts of the host's own Debian apt sources (no other network is reachable), asked
# for SUITE, SUITE-updates and SUITE-security whatever suite the host runs.
mirrors=$({ cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } |
  { grep -v '^[[:space:]]*#' || true; } | { grep -oE 'https?://[^[:space:]]+' || true; } | sed 's:/*$::' | sort -u)
main=$(grep -E '/debian$' <<<"$mirrors" | head -1 || true)
security=$(grep -E '/debian-security$' <<<"$mirrors" | head -1 || true)
[ -n "$main" ] || { log "no Debian apt source (.../debian) found in /etc/apt"; exit 1; }
sources=("deb $main $suite main" "deb $main $suite-updates main")
[ -z "$security" ] || sources+=("deb $security $suite-security main")

log "bootstrapping Debian $suite ($arch) into $root"
# dracut is diverted to a no-op while packages install: otherwise the kernel and dracut postinst
# scripts build initrds twice (minutes under load); one initrd is built below instead.
mmdebstrap --mode=root --variant=minbase --format=directory --architectures="$arch" \
  --aptopt='APT::Install-Recommends "false"' \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --essential-hook='chroot "$1" dpkg-divert --quiet --local --rename --divert /usr/bin/dracut.cptest-real --add /usr/bin/dracut && printf "#!/bin/sh\nexit 0\n" >"$1/usr/bin/dracut" && chmod 755 "$1/usr/bin/dracut"' \
  --customize-hook='rm -f "$1/usr/bin/dracut" && chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/bin/dracut' \
  --customize-hook='mkdir -p "$1/var/cache/cptest-efi-debs" && chroot "$1" sh -c "cd /var/cache/cptest-efi-debs && apt-get download -q shim-signed shim-helpers-'"$arch"'-signed grub-efi-'"$arch"'-signed"' \
  "$suite" "$root" "${sources[@]}" >&2

kver=$(ls "$root/lib/modules" | sort -V | tail -1)
log "kernel $kver"

# Documentation, translations and drivers a QEMU test guest never loads: dropping them halves the
# root filesystem, which every conversion (shrink, encrypt, verity) and every boot then reads less
# of. (Removed after installation: dpkg path-exclude breaks unpacking below excluded directories.)
rm -rf "$root"/usr/share/{doc,man,info} "$root"/usr/share/locale/*/LC_MESSAGES
for m in drivers/gpu drivers/media drivers/net/wireless drivers/net/ethernet drivers/infiniband \
  sound drivers/staging drivers/bluetooth net/bluetooth net/wireless net/mac80211 drivers/iio \
  drivers/isdn drivers/mtd drivers/input/touchscreen drivers/hwmon drivers/video/fbdev; do
  rm -rf "$root/lib/modules/$kver/kernel/$m"
done
chroot "$root" depmod "$kver"

# Guest configuration.
echo cptest >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 cptest\n' >"$root/etc/hosts"
printf 'LABEL=root / ext4 defaults 0 0\n' >"$root/etc/fstab"
: >"$root/etc/machine-id"
chroot "$root" passwd --quiet --delete root
# Extra kernel arguments for every boot entry of this test guest (convert adds root=...): serial
# console and the TCG speed-ups of direct boots (vm-test/guest/kernel-cmdline, TEST_CMDLINE in
# lib/context.ts says why). No rd.shell=0: a failed FDE boot must power off by what the product's
# initrd carries, as a user's would.
sed "s/console=ttyS0/console=$tty/" "$vmtest/guest/kernel-cmdline" | install -D -m 644 /dev/stdin "$root/etc/kernel/cmdline"
sed "s:/dev/ttyS0:/dev/$tty:" "$vmtest/guest/cptest-report" | install -D -m 755 /dev/stdin "$root/usr/local/sbin/cptest-report"
install -D -m 755 "$vmtest/guest/cptest-key" "$root/usr/local/bin/cptest-key"
install -D -m 644 "$vmtest/guest/cptest-report.service" "$root/etc/systemd/system/cptest-report.service"
install -D -m 644 "$vmtest/guest/cptest-quick.target" "$root/etc/systemd/system/cptest-quick.target"
chroot "$root" systemctl enable --quiet cptest-report.service
# Nothing on the test guest should wait for or poll the network.
chroot "$root" systemctl mask --quiet apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
  e2scrub_reap.service fstrim.timer 2>/dev/null || true
# cptest-report writes its markers straight to the serial port. A serial getty there (spawned because
# the kernel console is on it) hangs the tty up when it starts, and the report is cut off after its first
# lines; the harness reads only the serial log, so no login prompt is needed.
chroot "$root" systemctl mask --quiet "serial-getty@$tty.service"
# LVM monitoring (dmeventd) is for mirrors and thin pools; it only slows the test guest's boot.
chroot "$root" systemctl mask --quiet lvm2-monitor.service dm-event.socket lvm2-lvmpolld.socket

log "building the stock initrd"
for d in dev proc sys; do mount --rbind "/$d" "$root/$d"; mounts+=("$root/$d"); done
chroot "$root" dracut --quiet --force --no-hostonly --compress lz4 "/boot/initrd.img-$kver" "$kver" >&2
for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}"; done
mounts=()

# Signed shim and GRUB of the guest's suite (downloaded by the customize hook above, not installed:
# their maintainer scripts would run grub-install against the build host).
log "preparing the ESP"
mkdir -p "$work/efi"
for deb in "$root"/var/cache/cptest-efi-debs/*.deb; do dpkg-deb -x "$deb" "$work/efi"; done
rm -rf "$root/var/cache/cptest-efi-debs"
shim=$work/efi/usr/lib/shim/shim$efi.efi.signed
mm=$work/efi/usr/lib/shim/mm$efi.efi.signed
grub=$work/efi/usr/lib/grub/$grubdir/grub$efi.efi.signed
mkdir -p "$work/esp/EFI/BOOT" "$work/esp/EFI/debian"
for d in BOOT debian; do
  cp "$grub" "$work/esp/EFI/$d/grub$efi.efi"
  cp "$mm" "$work/esp/EFI/$d/mm$efi.efi"
done
cp "$shim" "$work/esp/EFI/BOOT/BOOT${efi^^}.EFI"
cp "$shim" "$work/esp/EFI/debian/shim$efi.efi"
# Debian's signed GRUB reads $prefix/grub.cfg with prefix /EFI/debian on the ESP.
cat >"$work/esp/EFI/debian/grub.cfg" <<'EOF'
search --no-floppy --label root --set=root
set prefix=($root)/boot/grub
configfile $prefix/grub.cfg
EOF
mkdir -p "$root/boot/grub"
cat >"$root/boot/grub/grub.cfg" <<EOF
set timeout=0
menuentry "Debian GNU/Linux, $kver" --id debian {
  linux /boot/vmlinuz-$kver root=LABEL=root ro $(cat "$root/etc/kernel/cmdline")
  initrd /boot/initrd.img-$kver
}
EOF
# Keep the signed binaries in the guest too, where a converter looks for them.
install -D -m 644 "$shim" "$root/usr/lib/shim/shim$efi.efi.signed"
install -D -m 644 "$mm" "$root/usr/lib/shim/mm$efi.efi.signed"
install -D -m 644 "$grub" "$root/usr/lib/grub/$grubdir/grub$efi.efi.signed"

log "assembling the disk image"
mib=$((1024 * 1024))
esp_mib=100
disk_mib=${CPTEST_BASE_DISK_MIB:-2048}
# The root partition just fits its content (+25%, +128 MiB) and the rest of the disk stays
# unpartitioned, as in a cloud image: convert copies, shrinks and encrypts less, and the free space
# is where the delta volume grows.
used_mib=$(du -sm --apparent-size "$root" | cut -f1)
root_mib=$((used_mib * 5 / 4 + 128))
truncate -s "${esp_mib}M" "$work/esp.img"
mkfs.vfat -F 32 -n EFI "$work/esp.img" >/dev/null
mcopy -s -i "$work/esp.img" "$work/esp/EFI" ::/
# 4 KiB blocks: dm-verity needs them and small filesystems would default to 1 KiB.
mkfs.ext4 -q -F -L root -b 4096 -d "$root" "$work/root.img" "${root_mib}M"
truncate -s "${disk_mib}M" "$work/disk.raw"
sfdisk --quiet "$work/disk.raw" <<EOF
label: gpt
start=1MiB, size=${esp_mib}MiB, type=uefi, name="EFI System Partition"
start=$((1 + esp_mib))MiB, size=${root_mib}MiB, type=linux, name="root"
EOF
dd if="$work/esp.img" of="$work/disk.raw" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.img" of="$work/disk.raw" bs=1M seek=$((1 + esp_mib)) conv=notrunc,sparse status=none

mkdir -p "$out"
mv "$work/disk.raw" "$out/disk.raw"
cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$out/initrd.img"
echo "$kver" >"$out/kver"
echo "$arch" >"$out/arch"
echo "$used_mib" >"$out/root-mib"
# Older cache entries are stale once the build script changed; one that a run used in the last
# 3 hours may still be read by a run started before the rebuild (vm-test/lib/base.ts touches it).
# (base-<16 hex>: the cache names before suites.)
for old in "$cache"/base-"$name"-???????????????? "$cache"/base-????????????????; do
  [ -d "$old" ] || continue
  [ "$old" = "$out" ] && continue
  [ -n "$(find "$old" -maxdepth 1 -name last-used -mmin -180)" ] || rm -rf "$old"
done
touch "$out/done"
log "done: $out"
echo "$out"
