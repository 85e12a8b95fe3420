#!/bin/bash
# dracut module "cryptpilot": boots a cryptpilot-fde root (LVM VG "cryptpilot", LUKS2, dm-verity,
# delta volume) through /usr/bin/cryptpilot-fde in two systemd units.
#
# Expected next to this file (convert copies dracut-module/91cryptpilot/* and hooks/* here):
#   cryptpilot-fde-before-sysroot.service, cryptpilot-fde-after-sysroot.service,
#   cryptpilot-fde-before-sysroot-network.conf, cryptpilot-wait-network-online.service,
#   cryptpilot-wait-network-online.sh, cryptpilot-network-online.sh, cryptpilot-resolv-conf.service,
#   cryptpilot-resolv-conf.sh,
#   12-cryptpilot-hide-intermediate-devices.rules, lvm.conf, cryptpilot-volumes-initrd.service
# Inputs (environment, optional):
#   CRYPTPILOT_CONFIG_DIR  directory with fde.toml, global.toml, metadata.toml (/etc/cryptpilot)
#   CRYPTPILOT_BIN         the agent binary to install as /usr/bin/cryptpilot-fde (/usr/bin/cryptpilot-fde)

# Only on request (dracut --add cryptpilot), like upstream.
check() {
    return 255
}

cryptpilot_config_dir() {
    echo "${dracutsysrootdir-}${CRYPTPILOT_CONFIG_DIR:-/etc/cryptpilot}"
}

# Data volume files with open_in_initrd = true (docs/volumes.md): opened in the initrd, before root.
cryptpilot_initrd_volumes() {
    local f
    for f in "$(cryptpilot_config_dir)"/volumes/*.toml; do
        if [[ -f $f ]] && grep -Eq '^[[:space:]]*open_in_initrd[[:space:]]*=[[:space:]]*true([[:space:]#]|$)' "$f"; then
            echo "$f"
        fi
    done
}

# The files whose key providers run in the initrd: fde.toml and the open_in_initrd volume files.
cryptpilot_provider_files() {
    local fde
    fde="$(cryptpilot_config_dir)/fde.toml"
    [[ -f $fde ]] && echo "$fde"
    cryptpilot_initrd_volumes
}

# The initrd boots a cryptpilot FDE root: fde.toml exists, or no volume either (then the boot
# stage reports the missing fde.toml). An initrd for open_in_initrd volumes alone leaves root alone.
cryptpilot_fde_root() {
    [[ -f "$(cryptpilot_config_dir)/fde.toml" ]] || [[ -z "$(cryptpilot_initrd_volumes)" ]]
}

# [boot] on_failure of global.toml: poweroff (also the answer for anything unexpected), reboot,
# halt, or shell (the debugging opt-in). The agent reads the same file at boot and acts on its own
# failures; this answer only sets what dracut and systemd do when something else fails, or the agent
# cannot act (killed). A line this sed does not understand leaves the safe default.
cryptpilot_failure_action() {
    local action
    action="$(sed -nE "s/^[[:space:]]*on_failure[[:space:]]*=[[:space:]]*[\"']([a-z]+)[\"'][[:space:]]*(#.*)?$/\1/p" \
        "$(cryptpilot_config_dir)/global.toml" 2>/dev/null | tail -n 1)"
    case $action in
    reboot | halt | shell) echo "$action" ;;
    *) echo poweroff ;;
    esac
}

# No shell on failure: dracut's emergency shell (rd.shell, on by default) is a root shell inside the
# TEE for whoever holds the console, which in a confidential VM is the host. The initrd carries
# rd.shell=0 and the emergency action itself, so they are measured with it; a kernel command line
# that says otherwise (rd.shell=1, rd.break) is measured too, for the broker's policy to refuse.
# The stage units stop the machine the same way when the agent cannot (FailureAction=).
cryptpilot_install_failure_action() {
    local action unit dropin
    action="$(cryptpilot_failure_action)"
    if [[ $action == shell ]]; then
        echo "rd.shell=1" >"$initdir/etc/cmdline.d/99-cryptpilot-failure.conf"
    else
        echo "rd.shell=0 rd.emergency=$action" >"$initdir/etc/cmdline.d/99-cryptpilot-failure.conf"
    fi
    [[ $action == poweroff ]] && return 0
    for unit in cryptpilot-fde-before-sysroot.service cryptpilot-fde-after-sysroot.service; do
        dropin="$initdir$systemdsystemunitdir/$unit.d"
        mkdir -p "$dropin"
        if [[ $action == shell ]]; then
            printf '[Unit]\nFailureAction=none\nOnFailure=emergency.target\nOnFailureJobMode=replace-irreversibly\n' \
                >"$dropin/90-failure-action.conf"
        else
            printf '[Unit]\nFailureAction=%s-force\n' "$action" >"$dropin/90-failure-action.conf"
        fi
    done
}

# True when FILE... (default: every provider file) configures a key provider of one of TYPES (an
# ERE alternation such as "kbs|kms"): upstream's table form ([delta.encrypt.kbs]) or the
# documented type form (type = "kbs").
cryptpilot_uses_provider() {
    local types=$1
    shift
    local -a files=("$@")
    ((${#files[@]})) || mapfile -t files < <(cryptpilot_provider_files)
    ((${#files[@]})) || return 1
    grep -Eqs "^[[:space:]]*\\[[^]#]*encrypt\\.($types)([.][^]#]*)?[[:space:]]*\\]|^[[:space:]]*type[[:space:]]*=[[:space:]]*\"($types)\"" "${files[@]}"
}

cryptpilot_needs_network() {
    cryptpilot_uses_provider 'kbs|kms|oidc' "$@"
}

# tpm2 unseals with the TPM; kbs sends TPM evidence when the guest is neither TDX nor SNP.
cryptpilot_needs_tpm() {
    cryptpilot_uses_provider 'tpm2|kbs' "$@"
}

# Commands of exec key providers (command = "..." in the provider files), so their scripts reach
# the initrd.
cryptpilot_exec_commands() {
    local -a files
    mapfile -t files < <(cryptpilot_provider_files)
    ((${#files[@]})) || return 0
    sed -nE 's/^[[:space:]]*command[[:space:]]*=[[:space:]]*"([^"]+)".*/\1/p' "${files[@]}"
}

# The initrd volumes' unit with its drop-ins: after each volume's device, after the network when a
# volume's provider needs it. Volume files go to /etc/cryptpilot/volumes in the initrd.
cryptpilot_install_initrd_volumes() {
    local -a vols devices=()
    local f dev dropins
    mapfile -t vols < <(cryptpilot_initrd_volumes)
    ((${#vols[@]})) || return 0
    for f in "${vols[@]}"; do
        inst_simple "$f" "/etc/cryptpilot/volumes/${f##*/}"
        dev="$(sed -nE 's/^[[:space:]]*dev[[:space:]]*=[[:space:]]*"([^"]+)".*/\1/p' "$f" | head -n 1)"
        [[ -n $dev ]] && devices+=("$(systemd-escape --path --suffix=device "$dev")")
    done
    # makefs of otp volumes (mkfs.ext4 is installed for the FDE stages anyway).
    inst_multiple -o mkswap mkfs.xfs mkfs.vfat
    if ! inst_simple "$moddir/cryptpilot-volumes-initrd.service" \
        "$systemdsystemunitdir/cryptpilot-volumes-initrd.service"; then
        derror "cryptpilot: $moddir/cryptpilot-volumes-initrd.service missing (open_in_initrd in ${vols[*]})"
        return 1
    fi
    dropins="$initdir$systemdsystemunitdir/cryptpilot-volumes-initrd.service.d"
    mkdir -p "$dropins"
    if ((${#devices[@]})); then
        printf '[Unit]\nWants=%s\nAfter=%s\n' "${devices[*]}" "${devices[*]}" >"$dropins/devices.conf"
    fi
    if cryptpilot_needs_network "${vols[@]}"; then
        inst_simple "$moddir/cryptpilot-fde-before-sysroot-network.conf" \
            "$systemdsystemunitdir/cryptpilot-volumes-initrd.service.d/network.conf"
    fi
    "${SYSTEMCTL:-systemctl}" -q --root "$initdir" enable cryptpilot-volumes-initrd.service
}

depends() {
    # dm: dmsetup and the dm udev rules (/dev/mapper links, udev sync); lvm: the lvm tools and
    # 11-dm-lvm.rules, which set the DM_VG_NAME/DM_LV_NAME our hiding rule matches.
    local deps="systemd dm lvm"
    if cryptpilot_needs_network; then
        deps+=" network"
    fi
    echo "$deps"
    return 0
}

installkernel() {
    # hostonly='': needed whatever the build host has loaded. af_alg + algif_*: cryptsetup checks
    # ciphers (and hashes them for integrity) through the kernel's userspace crypto API.
    hostonly='' instmods dm-mod dm-crypt dm-integrity dm-verity dm-snapshot dm-zero dm-bufio \
        zram overlay loop authenc hmac sha256 sha256-ssse3 xts aes aesni-intel cbc ecb \
        crc32c crc32c-intel af_alg algif_skcipher algif_hash algif_aead ext4 \
        virtio-blk virtio-scsi virtio-pci
    if cryptpilot_needs_network; then
        hostonly='' instmods virtio-net net-failover failover
    fi
    if cryptpilot_needs_tpm; then
        hostonly='' instmods tpm tpm_tis tpm_tis_core tpm_crb
    fi
    cryptpilot_install_tee_modules
    return 0
}

# TEE guest drivers, whatever the build host is (rarely the TDX or SEV-SNP guest itself): the
# Intel TDX and AMD SEV-SNP guest drivers (/dev/tdx_guest, /dev/sev-guest and their configfs-tsm
# report providers), configfs-tsm (module tsm, as in Debian 13's 6.12; tsm_report since the 2025
# coco/tsm split) and configfs. dracut's generic set leaves drivers/virt/coco out; Debian 13
# builds all of them as modules. Built-in or absent ones (Debian 12's 6.1 has sev-guest and
# configfs only: no TDX guest support, no configfs-tsm) are skipped by instmods. The
# before-sysroot stage loads them and mounts configfs before it detects the TEE; a TEE guest
# without its driver stops there, naming it (agent/src/attest/platform.ts, TEE_DRIVERS).
cryptpilot_install_tee_modules() {
    hostonly='' instmods configfs tsm tsm_report tdx_guest sev-guest
}

install() {
    local bin="${CRYPTPILOT_BIN:-/usr/bin/cryptpilot-fde}" cfg f cmd

    # Never strip: `strip` (any mode) turns the compiled Bun executable back into plain `bun`, and
    # the stages would silently not run. dracut sources this file in its own shell and strips
    # after all modules are installed, so this overrides a do_strip=yes from the caller too.
    # shellcheck disable=SC2034
    do_strip=no
    # Compression: the agent makes the initrd ~136 MB uncompressed. Measured under QEMU TCG:
    # zstd -15 gives 55 MB but 3-5 s of decompression before systemd starts, lz4 gives 70 MB and
    # ~1.5 s, none gives 136 MB and no delay. lz4 is the best size/boot-time trade-off, so it is
    # the default; a compression the image or the caller chose wins. dracut has already applied
    # dracut.conf and dracut.conf.d/*.conf (compress="zstd"), INITRD_COMPRESS, --compress and
    # --no-compress (compress=cat) to $compress before any module's install() runs, in this
    # shell, and sets no default of its own until after the modules: an empty $compress means
    # nobody chose one. The sizes per compression: docs/install.md, "Disk footprint".
    if [[ -z ${compress-} ]] && command -v lz4 >/dev/null; then
        # shellcheck disable=SC2034
        compress=lz4
    fi

    if [[ ! -x $dracutsysrootdir$bin ]]; then
        derror "cryptpilot: agent binary $bin not found"
        return 1
    fi
    inst_binary "$bin" /usr/bin/cryptpilot-fde

    # Every program the boot stages (and growpart, a shell script) run.
    inst_multiple lvm vgchange vgs lvs lvcreate lvextend pvs pvresize \
        cryptsetup veritysetup dmsetup blkid lsblk findmnt sfdisk partx growpart blockdev \
        mkfs.ext4 mke2fs tune2fs resize2fs e2fsck mount umount mountpoint \
        bash sh cp mv rm mkdir rmdir ln cat awk sed grep seq cut tr head tail sort uniq wc sync \
        dd stat readlink basename dirname mktemp sleep touch chmod base64 modprobe udevadm flock
    inst_multiple -o wipefs sgdisk

    # Exec key providers' commands (scripts bring their interpreter along).
    while IFS= read -r cmd; do
        [[ -n $cmd ]] || continue
        if ! inst_multiple "$cmd"; then
            derror "cryptpilot: exec key provider command '$cmd' (fde.toml or a volume file) not found"
            return 1
        fi
    done < <(cryptpilot_exec_commands)
    # A conventional place for helper scripts of exec providers.
    if [[ -d $dracutsysrootdir/usr/lib/cryptpilot/bin ]]; then
        for f in "$dracutsysrootdir"/usr/lib/cryptpilot/bin/*; do
            [[ -f $f ]] && inst_multiple "${f#"${dracutsysrootdir-}"}"
        done
    fi

    # tpm2-tss for the agent's bun:ffi TPM access (dlopen by soname, found through the initrd's
    # ld.so.cache); only the device TCTI: the initrd talks to /dev/tpmrm0.
    if cryptpilot_needs_tpm; then
        inst_libdir_file "libtss2-esys.so.0*" "libtss2-sys.so.1*" "libtss2-mu.so.0*" "libtss2-rc.so.0*" \
            "libtss2-tctildr.so.0*" "libtss2-tcti-device.so.0*"
    fi

    # Configuration (convert also passes these with --include; both give the same files).
    cfg="$(cryptpilot_config_dir)"
    for f in fde.toml global.toml metadata.toml; do
        [[ -f $cfg/$f ]] && inst_simple "$cfg/$f" "/etc/cryptpilot/$f"
    done

    inst_simple "$moddir/lvm.conf" /usr/lib/cryptpilot/lvm/lvm.conf
    inst_simple "$moddir/12-cryptpilot-hide-intermediate-devices.rules" \
        "$udevrulesdir/12-cryptpilot-hide-intermediate-devices.rules"

    cryptpilot_install_initrd_volumes || return 1

    mkdir -p "$initdir/etc/cmdline.d"
    cryptpilot_install_failure_action
    if cryptpilot_fde_root; then
        inst_simple "$moddir/cryptpilot-fde-before-sysroot.service" \
            "$systemdsystemunitdir/cryptpilot-fde-before-sysroot.service"
        inst_simple "$moddir/cryptpilot-fde-after-sysroot.service" \
            "$systemdsystemunitdir/cryptpilot-fde-after-sysroot.service"
        "${SYSTEMCTL:-systemctl}" -q --root "$initdir" enable \
            cryptpilot-fde-before-sysroot.service cryptpilot-fde-after-sysroot.service

        # The agent, not dracut, opens our LVM and LUKS volumes; dracut must not ask for a LUKS
        # passphrase or activate the VG on its own. The delta format on a first boot can take longer
        # than dracut's default 180 s root-device wait, so wait up to 15 minutes.
        echo "rd.luks=0 rd.lvm=0 rd.md=0 rd.dm=0 rd.retry=900" >"$initdir/etc/cmdline.d/90-cryptpilot.conf"
    fi

    if cryptpilot_needs_network; then
        echo "rd.neednet=1 ip=dhcp" >"$initdir/etc/cmdline.d/35-cryptpilot-network.conf"
        if cryptpilot_fde_root && cryptpilot_needs_network "$cfg/fde.toml"; then
            inst_simple "$moddir/cryptpilot-fde-before-sysroot-network.conf" \
                "$systemdsystemunitdir/cryptpilot-fde-before-sysroot.service.d/network.conf"
        fi
        if dracut_module_included "network-legacy"; then
            # dhclient via udev/ifup orders nothing before network-online.target: hold it until
            # the initqueue/online hook has seen an interface come up.
            inst_simple "$moddir/cryptpilot-wait-network-online.service" \
                "$systemdsystemunitdir/cryptpilot-wait-network-online.service"
            inst_script "$moddir/cryptpilot-wait-network-online.sh" \
                /usr/lib/cryptpilot/bin/cryptpilot-wait-network-online.sh
            # convert may write the module's files without their mode bits.
            chmod 0755 "$initdir/usr/lib/cryptpilot/bin/cryptpilot-wait-network-online.sh"
            inst_hook initqueue/online 95 "$moddir/cryptpilot-network-online.sh"
            "${SYSTEMCTL:-systemctl}" -q --root "$initdir" enable cryptpilot-wait-network-online.service
        else
            # systemd-networkd (what dracut's network module picks on systemd distributions):
            # it ignores ip= from /etc/cmdline.d, so configure DHCP on every Ethernet link here;
            # systemd-networkd-wait-online then holds network-online.target until it has an address.
            mkdir -p "$initdir/etc/systemd/network"
            printf '[Match]\nType=ether\n\n[Network]\nDHCP=yes\n' \
                >"$initdir/etc/systemd/network/90-cryptpilot-dhcp.network"
            # Name resolution: this initrd has no resolv.conf and no systemd-resolved (Debian's
            # base images lack it; pulling it in would also need dbus), so a unit ordered before
            # network-online.target writes /etc/resolv.conf from the DNS servers networkd got
            # (DHCP, or DNS= of a .network file), keeping any resolv.conf that already exists.
            # network-legacy needs nothing: its dhclient-script writes resolv.conf itself before
            # the initqueue/online hook runs; NetworkManager manages resolv.conf itself too.
            if dracut_module_included "systemd-networkd"; then
                inst_simple "$moddir/cryptpilot-resolv-conf.service" \
                    "$systemdsystemunitdir/cryptpilot-resolv-conf.service"
                inst_script "$moddir/cryptpilot-resolv-conf.sh" /usr/lib/cryptpilot/bin/cryptpilot-resolv-conf.sh
                chmod 0755 "$initdir/usr/lib/cryptpilot/bin/cryptpilot-resolv-conf.sh"
                "${SYSTEMCTL:-systemctl}" -q --root "$initdir" enable cryptpilot-resolv-conf.service
            fi
        fi
        # CA bundle for HTTPS key brokers (the agent reads it when a config names no root cert).
        inst_multiple -o /etc/ssl/certs/ca-certificates.crt
    fi
    return 0
}
