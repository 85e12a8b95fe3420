/**
 * show-reference-value end to end on disk images built here with the real tools and Debian's real
 * signed shim, GRUB and kernel. Expected values come from independent tools: sha*sum for files
 * and command lines, pesign -h for Authenticode (SHA-256).
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { diskImage, ESP_GPT, ext4Image, fatImage, LINUX_GPT } from "../../testkit/images.ts";
import { formatLuksFile } from "../../testkit/luks-craft.ts";
import { sh, tempDir } from "../../testkit/sh.ts";
import { bytes } from "../image/util.ts";
import { cli, showJson } from "./cli.ts";
import { debianBoot } from "./debian.ts";

const work = tempDir("refvalue");
afterAll(() => rmSync(work, { recursive: true, force: true }));
const deb = debianBoot();
/** Each test spawns the CLI a few times over real kernels; the shared 2-core host can be slow. */
setDefaultTimeout(60_000);
const V = deb.kernelVersion;

const sum = (algo: string, file: string) => sh([`${algo}sum`, file]).split(" ")[0]!;
const sumText = (algo: string, text: string) => sh([`${algo}sum`], text).split(" ")[0]!;
const pesign = (file: string) => /hash: ([0-9a-f]+)/.exec(sh(["pesign", "-h", "-i", file]))![1]!;

describe("Debian-style GRUB disk, never booted, ESP and /boot as partitions 11 and 12", () => {
  const initrd = join(work, "initrd.img");
  writeFileSync(initrd, bytes(3_000_000, 11));
  const espGrubCfg =
    "search.fs_uuid 0000 root hd0,gpt12\nset prefix=($root)'/grub'\nconfigfile $prefix/grub.cfg\n";
  const grubCfg = [
    "if [ -s $prefix/grubenv ]; then",
    "  set have_grubenv=true",
    "  load_env",
    "fi",
    `if [ "\${next_entry}" ] ; then`,
    `   set default="\${next_entry}"`,
    "   set next_entry=",
    "   save_env next_entry",
    "else",
    '   set default="0"',
    "fi",
    'menuentry_id_option="--id"',
    "menuentry 'Debian GNU/Linux' --class debian --class gnu-linux $menuentry_id_option 'gnulinux-simple-0000' {",
    "\tinsmod ext2",
    `\techo\t'Loading Linux ${V} ...'`,
    `\tlinuxefi\t/vmlinuz-${V} root=/dev/mapper/rootfs ro  console=ttyS0,115200n8 "quoted arg"`,
    `\tinitrdefi\t/initrd.img-${V}`,
    "}",
    "submenu 'Advanced options for Debian GNU/Linux' $menuentry_id_option 'gnulinux-advanced-0000' {",
    `\tmenuentry 'Debian GNU/Linux, with Linux ${V} (recovery mode)' $menuentry_id_option 'gnulinux-${V}-recovery-0000' {`,
    `\t\tlinux /vmlinuz-${V} root=/dev/mapper/rootfs ro single`,
    `\t\tinitrd /initrd.img-${V}`,
    "\t}",
    "}",
    "",
  ].join("\n");
  const grubenv = `# GRUB Environment Block\n${"#".repeat(1024 - 24)}`;
  const esp = fatImage(join(work, "esp.img"), 40, {
    "EFI/debian/shimx64.efi": readFileSync(deb.shim),
    "EFI/debian/grubx64.efi": readFileSync(deb.grub),
    "EFI/debian/grub.cfg": espGrubCfg,
    "EFI/BOOT/BOOTX64.EFI": readFileSync(deb.shim),
  });
  const boot = ext4Image(join(work, "boot.img"), 64, {
    [`vmlinuz-${V}`]: readFileSync(deb.kernel),
    [`initrd.img-${V}`]: readFileSync(initrd),
    "grub/grub.cfg": grubCfg,
    "grub/grubenv": grubenv,
    boot: { symlink: "." },
  });
  const raw = diskImage(join(work, "debian.img"), "gpt", [
    ...Array.from({ length: 10 }, () => ({ sizeMiB: 1, type: LINUX_GPT })),
    { sizeMiB: 40, type: ESP_GPT, name: "EFI System Partition", image: esp },
    { sizeMiB: 64, type: LINUX_GPT, name: "boot", image: boot },
  ]);
  const qcow = join(work, "debian.qcow2");
  sh(["qemu-img", "convert", "-c", "-O", "qcow2", raw, qcow]);

  const args = `root=/dev/mapper/rootfs ro console=ttyS0,115200n8 "quoted arg"`;
  const candidates = [`/vmlinuz-${V} ${args}`, `(hd0,gpt12)/boot/vmlinuz-${V} ${args}`];

  for (const image of [raw, qcow]) {
    test(`${image.endsWith("qcow2") ? "compressed qcow2" : "raw"}: keys, order and values`, () => {
      const out = showJson("--disk", image, "--hash-algo", "sha256", "--hash-algo", "sha384");
      const keys = (label: string) =>
        ["kernel_cmdline", "kernel", "initrd", "grub", "shim"].map((k) => `measurement.${k}.${label}`);
      expect(Object.keys(out)).toEqual(["kernel_cmdline", ...keys("SHA-256"), ...keys("SHA-384")]);
      expect(out.kernel_cmdline).toEqual(candidates.map((c) => `grub_kernel_cmdline ${c}`));
      for (const algo of ["sha256", "sha384"]) {
        const label = algo === "sha256" ? "SHA-256" : "SHA-384";
        expect(out[`measurement.kernel_cmdline.${label}`]).toEqual(candidates.map((c) => sumText(algo, c)));
        expect(out[`measurement.kernel.${label}`]).toEqual([sum(algo, deb.kernel)]);
        expect(out[`measurement.initrd.${label}`]).toEqual([sum(algo, initrd)]);
      }
      expect(out["measurement.grub.SHA-256"]).toEqual([pesign(deb.grub)]);
      expect(out["measurement.shim.SHA-256"]).toEqual([pesign(deb.shim)]);
    });
  }

  test("a block device gives the same values as its image", () => {
    const loop = sh(["losetup", "-r", "-f", "--show", raw]).trim();
    try {
      expect(showJson("--disk", loop, "--hash-algo", "sha256")).toEqual(
        showJson("--disk", raw, "--hash-algo", "sha256"),
      );
    } finally {
      sh(["losetup", "-d", loop]);
    }
  });

  test("default algorithm is sha384; sm3 keys are spelled SM3", () => {
    expect(Object.keys(showJson("--disk", qcow))).toEqual([
      "kernel_cmdline",
      ...["kernel_cmdline", "kernel", "initrd", "grub", "shim"].map((k) => `measurement.${k}.SHA-384`),
    ]);
    const sm3 = showJson("--disk", raw, "--hash-algo", "sm3");
    const openssl = sh(["openssl", "dgst", "-sm3", "-r", deb.kernel]).split(" ")[0];
    expect(sm3["measurement.kernel.SM3"]).toEqual([openssl!]);
  });
});

describe("plain Debian disk: /boot inside the root partition, GRUB in EFI/debian and EFI/BOOT", () => {
  const esp = fatImage(join(work, "plain-esp.img"), 40, {
    "EFI/debian/shimx64.efi": readFileSync(deb.shim),
    "EFI/debian/grubx64.efi": readFileSync(deb.grub),
    "EFI/BOOT/BOOTX64.EFI": readFileSync(deb.shim),
    "EFI/BOOT/grubx64.efi": readFileSync(deb.grub),
  });
  const initrd = bytes(1000, 51);
  const root = ext4Image(join(work, "plain-root.img"), 48, {
    [`boot/vmlinuz-${V}`]: readFileSync(deb.kernel),
    [`boot/initrd.img-${V}`]: initrd,
    "boot/grub/grub.cfg": `menuentry 'Debian' {\n  linux /boot/vmlinuz-${V} root=LABEL=root ro\n  initrd /boot/initrd.img-${V}\n}\n`,
    // Debian's top-level kernel symlinks must not make the root partition look like /boot.
    vmlinuz: { symlink: `boot/vmlinuz-${V}` },
    "etc/hostname": "debian\n",
  });
  const disk = diskImage(join(work, "plain.img"), "gpt", [
    { sizeMiB: 40, type: ESP_GPT, image: esp },
    { sizeMiB: 48, type: LINUX_GPT, name: "root", image: root },
  ]);

  test("the kernel path is measured as typed; identical binaries in two ESP directories are listed once", () => {
    const out = showJson("--disk", disk, "--hash-algo", "sha256");
    const candidates = [
      `/boot/vmlinuz-${V} root=LABEL=root ro`,
      `(hd0,gpt2)/boot/vmlinuz-${V} root=LABEL=root ro`,
    ];
    expect(out.kernel_cmdline).toEqual(candidates.map((c) => `grub_kernel_cmdline ${c}`));
    expect(out["measurement.kernel.SHA-256"]).toEqual([sum("sha256", deb.kernel)]);
    expect(out["measurement.grub.SHA-256"]).toEqual([pesign(deb.grub)]);
    expect(out["measurement.shim.SHA-256"]).toEqual([pesign(deb.shim)]);
  });
});

describe("RHEL-style BLS disk: MBR, /boot inside an LVM root LV, saved_entry", () => {
  const vg = `h5bls${process.pid}`;
  const older = "5.10.134-9.al8.x86_64";
  const newer = "5.10.134-19.al8.x86_64";
  const kernelOld = bytes(500_000, 21);
  const initrdOld = bytes(700_000, 22);
  const kernelNew = bytes(500_001, 23);
  const bls = (v: string) =>
    `title Alibaba Cloud Linux (${v})\nversion ${v}\nlinux /boot/vmlinuz-${v}\ninitrd /boot/initramfs-${v}.img $tuned_initrd\noptions $kernelopts $tuned_params\nid alinux-${v}\n`;
  const grubCfg = [
    "set pager=1",
    `if [ -f \${config_directory}/grubenv ]; then`,
    `  load_env -f \${config_directory}/grubenv`,
    "fi",
    `if [ "\${next_entry}" ] ; then`,
    `   set default="\${next_entry}"`,
    "   set next_entry=",
    "else",
    `   set default="\${saved_entry}"`,
    "fi",
    "insmod blscfg",
    "blscfg",
    "",
  ].join("\n");
  const kernelopts = `root=/dev/mapper/${vg}-root ro  crashkernel=auto  console=ttyS0`;
  const grubenv = `# GRUB Environment Block\nsaved_entry=abc-${older}\nkernelopts=${kernelopts}\nboot_success=0\n`;
  const disk = join(work, "bls.img");
  const esp = fatImage(join(work, "bls-esp.img"), 40, {
    "EFI/alinux/shimx64.efi": readFileSync(deb.shim),
    "EFI/alinux/grubx64.efi": readFileSync(deb.grub),
  });
  const root = ext4Image(join(work, "root.img"), 32, {
    [`boot/vmlinuz-${older}`]: kernelOld,
    [`boot/initramfs-${older}.img`]: initrdOld,
    [`boot/vmlinuz-${newer}`]: kernelNew,
    [`boot/initramfs-${newer}.img`]: bytes(10, 24),
    [`boot/loader/entries/abc-${older}.conf`]: bls(older),
    [`boot/loader/entries/abc-${newer}.conf`]: bls(newer),
    "boot/grub2/grub.cfg": grubCfg,
    "boot/grub2/grubenv": grubenv,
    "etc/hostname": "rhel\n",
  });
  const pv = join(work, "pv.img");
  sh(["truncate", "-s", "48M", pv]);
  const loop = sh(["losetup", "-f", "--show", pv]).trim();
  const config = "backup { backup = 0 archive = 0 }";
  const lvm = (...a: string[]) => sh([a[0]!, "--config", config, ...a.slice(1)]);
  try {
    lvm("pvcreate", "-q", loop);
    lvm("vgcreate", "-q", vg, loop);
    lvm("lvcreate", "-q", "--driverloaded", "n", "-an", "-Zn", "-L", "32M", "-n", "root", vg);
    const peStart = Number.parseInt(lvm("pvs", "--noheadings", "--units", "b", "-o", "pe_start", loop), 10);
    sh([
      "dd",
      `if=${root}`,
      `of=${pv}`,
      "bs=1M",
      `seek=${peStart}`,
      "oflag=seek_bytes",
      "conv=notrunc",
      "status=none",
    ]);
    // Copy the PV into the disk before vgremove wipes its metadata.
    diskImage(disk, "dos", [
      { sizeMiB: 40, type: "ef", image: esp },
      { sizeMiB: 48, type: "8e", image: pv },
    ]);
  } finally {
    Bun.spawnSync(["vgremove", "--config", config, "-f", vg], { stderr: "ignore", stdout: "ignore" });
    Bun.spawnSync(["losetup", "-d", loop]);
  }

  test("saved_entry picks the older BLS entry; $kernelopts is expanded and re-spaced as GRUB does", () => {
    const out = showJson("--disk", disk, "--hash-algo", "sha256");
    const args = `root=/dev/mapper/${vg}-root ro crashkernel=auto console=ttyS0`;
    // GRUB's LVM device name doubles dashes inside names: our VG name has none.
    const candidates = [`/boot/vmlinuz-${older} ${args}`, `(lvm/${vg}-root)/boot/vmlinuz-${older} ${args}`];
    expect(out.kernel_cmdline).toEqual(candidates.map((c) => `grub_kernel_cmdline ${c}`));
    expect(out["measurement.kernel_cmdline.SHA-256"]).toEqual(candidates.map((c) => sumText("sha256", c)));
    const tmp = join(work, "k");
    writeFileSync(tmp, kernelOld);
    expect(out["measurement.kernel.SHA-256"]).toEqual([sum("sha256", tmp)]);
    writeFileSync(tmp, initrdOld);
    expect(out["measurement.initrd.SHA-256"]).toEqual([sum("sha256", tmp)]);
    expect(out["measurement.grub.SHA-256"]).toEqual([pesign(deb.grub)]);
  });
});

describe("UKI disk", () => {
  const cmdline = join(work, "cmdline");
  writeFileSync(cmdline, "root=/dev/mapper/rootfs console=ttyS0\0");
  const initrd = join(work, "uki-initrd");
  writeFileSync(initrd, bytes(100_001, 31));
  const uki = join(work, "uki.efi");
  sh([
    "objcopy",
    ...["--add-section", `.cmdline=${cmdline}`, "--change-section-vma", ".cmdline=0x30000"],
    ...["--add-section", `.linux=${deb.kernel}`, "--change-section-vma", ".linux=0x2000000"],
    ...["--add-section", `.initrd=${initrd}`, "--change-section-vma", ".initrd=0x3000000"],
    "/usr/lib/systemd/boot/efi/linuxx64.efi.stub",
    uki,
  ]);
  const esp = fatImage(join(work, "uki-esp.img"), 40, { "EFI/BOOT/BOOTX64.EFI": readFileSync(uki) });
  const disk = diskImage(join(work, "uki.img"), "gpt", [{ sizeMiB: 40, type: ESP_GPT, image: esp }]);

  test("measurement.uki is the unpadded Authenticode digest", () => {
    expect(readFileSync(uki).length % 8).not.toBe(0); // the padding question matters for this file
    const out = showJson("--disk", disk, "--hash-algo", "sha256", "--hash-algo", "sha1");
    expect(out).toEqual({
      "measurement.uki.SHA-256": [pesign(uki)],
      "measurement.uki.SHA-1": [/hash: ([0-9a-f]+)/.exec(sh(["pesign", "-h", "-d", "sha1", "-i", uki]))![1]!],
    });
  });
});

describe("bad images get one clear paragraph and a non-zero exit", () => {
  const check = (args: string[], message: RegExp) => {
    const r = cli("show-reference-value", ...args);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  };

  test("missing file", () => check(["--disk", join(work, "nope.img")], /cannot open .*nope.img/));

  test("not a disk", () => {
    const junk = join(work, "junk.img");
    writeFileSync(junk, bytes(1 << 20, 41));
    check(["--disk", junk], /no GPT or MBR partition table; it is not a disk image/);
  });

  test("no ESP", () => {
    const fs = ext4Image(join(work, "only-ext4.img"), 8, { "etc/hostname": "x" });
    check(
      ["--disk", diskImage(join(work, "noesp.img"), "gpt", [{ sizeMiB: 8, type: LINUX_GPT, image: fs }])],
      /no EFI system partition/,
    );
  });

  test("ESP without GRUB or UKI", () => {
    const esp = fatImage(join(work, "empty-esp.img"), 40, { "EFI/BOOT/readme.txt": "x" });
    const boot = ext4Image(join(work, "empty-boot.img"), 8, { [`vmlinuz-${V}`]: "k" });
    const disk = diskImage(join(work, "nogrub.img"), "gpt", [
      { sizeMiB: 40, type: ESP_GPT, image: esp },
      { sizeMiB: 8, type: LINUX_GPT, name: "boot", image: boot },
    ]);
    check(["--disk", disk], /the ESP has no GRUB/);
  });

  test("encrypted root without a /boot partition", () => {
    const esp = fatImage(join(work, "luks-esp.img"), 40, {
      "EFI/debian/grubx64.efi": readFileSync(deb.grub),
    });
    const luks = formatLuksFile(join(work, "luks.img"), "k", { sizeMiB: 20 });
    const disk = diskImage(join(work, "luksroot.img"), "gpt", [
      { sizeMiB: 40, type: ESP_GPT, image: esp },
      { sizeMiB: 20, type: LINUX_GPT, image: luks },
    ]);
    check(
      ["--disk", disk],
      /partition 2 \(luks\) cannot be read without its key.*\/boot must be a separate partition/s,
    );
  });

  test("unknown --hash-algo", () => check(["--hash-algo", "md5"], /unknown algorithm 'md5'/));
});
