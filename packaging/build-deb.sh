#!/bin/bash
# Builds the Debian package cryptpilot-fde_<version>_<arch>.deb with dpkg-deb (no debhelper: the
# payload is one prebuilt executable plus text files, so a staged tree is all a package needs).
#
#   packaging/build-deb.sh --bin dist/cryptpilot-fde --arch amd64 --version 0.1.0 --out dist
#     [--help-bin BIN]   an executable of the build host's architecture for help2man (default --bin;
#                        the arm64 package takes its man page from the x86-64 build: same text)
# Environment: SOURCE_DATE_EPOCH (file times, changelog date), DEB_COMPRESSION (dpkg-deb -Z; gzip by
# default: xz saves 5 MB of 45 but takes minutes on a loaded 2-core box; the tests use none),
# DEB_MAINTAINER (the Maintainer field; default: package.json's "author", the project's maintainers,
# the identity its commits carry; a distribution that rebuilds the package puts its own here).
#
# What goes where (docs/install.md lists it for users; agent/test/packaging/deb.test.ts checks it):
#   /usr/bin/cryptpilot-fde, /usr/bin/cryptpilot-crypt -> cryptpilot-fde (upstream's data-volume
#   command; the agent maps its argv onto `volume ...` when started under that name),
#   /usr/lib/dracut/modules.d/91cryptpilot/ (dracut-module/91cryptpilot/* and hooks/*, exactly what
#   convert writes), the udev rule, cryptpilot-volumes.service with cryptpilot.service as an alias
#   symlink (upstream's unit name), commented templates in /etc/cryptpilot (conffiles, named
#   *.template as upstream does, so they configure nothing until copied), man pages.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
top="$(dirname "$here")"
bin="" help_bin="" arch="" version="" out=""
while (($#)); do
    case $1 in
    --bin) bin=$2 ;;
    --help-bin) help_bin=$2 ;;
    --arch) arch=$2 ;;
    --version) version=$2 ;;
    --out) out=$2 ;;
    *)
        echo "build-deb.sh: unknown argument $1" >&2
        exit 2
        ;;
    esac
    shift 2
done
[[ -n $bin && -n $arch && -n $version && -n $out ]] || {
    echo "usage: build-deb.sh --bin BIN --arch amd64|arm64 --version VERSION --out DIR [--help-bin BIN]" >&2
    exit 2
}
help_bin=${help_bin:-$bin}
for tool in dpkg-deb help2man gzip md5sum; do
    command -v "$tool" >/dev/null || {
        echo "build-deb.sh: $tool is missing (apt-get install dpkg-dev help2man; see .ci/apt-packages)" >&2
        exit 1
    }
done
[[ -x $bin ]] || {
    echo "build-deb.sh: $bin is not an executable (run make build first)" >&2
    exit 1
}

pkg=cryptpilot-fde
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$top" log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH=$epoch
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
doc="$root/usr/share/doc/$pkg"
moddir="$root/usr/lib/dracut/modules.d/91cryptpilot"
unitdir="$root/usr/lib/systemd/system"

# --- payload ---------------------------------------------------------------------------------
# Never strip the executable: strip turns a Bun executable back into plain `bun`.
install -D -m 0755 "$bin" "$root/usr/bin/$pkg"
ln -s "$pkg" "$root/usr/bin/cryptpilot-crypt"

# The dracut module: the same files convert embeds (agent/src/convert/assets.ts MODULE_FILES).
install -d -m 0755 "$moddir"
for f in "$top"/dracut-module/91cryptpilot/* "$top"/hooks/*; do
    case $f in
    *.sh) install -m 0755 "$f" "$moddir/" ;;
    *) install -m 0644 "$f" "$moddir/" ;;
    esac
done
# The udev rule acts in the booted system too: LABEL=/UUID= of the rootfs resolve only to
# /dev/mapper/rootfs (convert installs it the same way).
for f in "$top"/hooks/*.rules; do
    install -D -m 0644 "$f" "$root/usr/lib/udev/rules.d/${f##*/}"
done
# The data-volume unit of the booted system, also under upstream's name: a unit file symlink in
# the unit directory is an alias, so `systemctl enable --now cryptpilot.service` (upstream's
# docs) enables cryptpilot-volumes.service.
install -D -m 0644 "$top/hooks/cryptpilot-volumes.service" "$unitdir/cryptpilot-volumes.service"
ln -s cryptpilot-volumes.service "$unitdir/cryptpilot.service"

# Configuration templates, upstream's places and names (conffiles).
install -D -m 0644 "$here/templates/fde.toml.template" "$root/etc/cryptpilot/fde.toml.template"
install -D -m 0644 "$here/templates/global.toml.template" "$root/etc/cryptpilot/global.toml.template"
for f in "$top"/docs/volume-templates/*.toml; do
    install -D -m 0644 "$f" "$root/etc/cryptpilot/volumes/${f##*/}.template"
done

# Documentation: copyright, changelog (a native package: changelog.gz), README, man pages.
install -D -m 0644 "$here/deb/copyright" "$doc/copyright"
date_rfc=$(LC_ALL=C date -u -R -d "@$epoch")
maintainer=${DEB_MAINTAINER:-$(sed -nE 's/^  "author": "([^"]+)".*/\1/p' "$top/package.json")}
[ -n "$maintainer" ] || { echo "build-deb.sh: no Maintainer: package.json has no \"author\" and DEB_MAINTAINER is unset" >&2; exit 2; }
sed -e "s/@VERSION@/$version/" -e "s/@MAINTAINER@/$maintainer/" -e "s/@DATE@/$date_rfc/" \
    "$here/deb/changelog.in" | gzip -9n >"$doc/changelog.gz"
gzip -9n <"$top/README.md" >"$doc/README.md.gz"
install -d -m 0755 "$root/usr/share/man/man1"
help2man --no-info --section 1 --name "full-disk encryption for confidential VMs" \
    --version-string "$version" "$help_bin" | gzip -9n >"$root/usr/share/man/man1/$pkg.1.gz"
ln -s "$pkg.1.gz" "$root/usr/share/man/man1/cryptpilot-crypt.1.gz"
install -D -m 0644 "$here/deb/lintian-overrides" "$root/usr/share/lintian/overrides/$pkg"

# --- control ---------------------------------------------------------------------------------
install -d -m 0755 "$root/DEBIAN"
size_kib=$(du -k -s --apparent-size --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size_kib/" \
    -e "s/@MAINTAINER@/$maintainer/" "$here/deb/control.in" >"$root/DEBIAN/control"
(cd "$root" && find etc -type f | sed 's|^|/|' | LC_ALL=C sort) >"$root/DEBIAN/conffiles"
(cd "$root" && find usr -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
for s in postinst postrm; do install -m 0755 "$here/deb/$s" "$root/DEBIAN/$s"; done
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"
# Reproducible: every file's time is the commit's (dpkg-deb also clamps to SOURCE_DATE_EPOCH).
find "$root" -exec touch -h -d "@$epoch" {} +

mkdir -p "$out"
deb="$out/${pkg}_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"${DEB_COMPRESSION:-gzip}" --build "$root" "$deb" >/dev/null
echo "$deb"
