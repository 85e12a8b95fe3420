/**
 * arm64 boot files on the ESP: show-reference-value finds shimaa64.efi + grubaa64.efi and a UKI at
 * EFI/BOOT/BOOTAA64.EFI, and config dump --disk reads that UKI's .initrd. The binaries are Debian's
 * x86-64 shim, GRUB and systemd stub with the PE Machine field set to arm64 (0xaa64): what is
 * measured is the file (Authenticode, checked against pesign), whatever its machine.
 */
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AMD64, ARM64, peArch, systemdStubPath } from "../../src/arch.ts";
import { parsePe } from "../../src/refvalue/pe.ts";
import { diskImage, ESP_GPT, ext4Image, fatImage, LINUX_GPT, writeFiles } from "../../testkit/images.ts";
import { sh, tempDir } from "../../testkit/sh.ts";
import { bytes } from "../image/util.ts";
import { cli, showJson } from "./cli.ts";
import { debianBoot } from "./debian.ts";

const STUB_X64 = systemdStubPath(AMD64);
const work = tempDir("refvalue-arm64");
afterAll(() => rmSync(work, { recursive: true, force: true }));
const deb = debianBoot();
setDefaultTimeout(60_000);
const V = deb.kernelVersion;

const pesign = (file: string) => /hash: ([0-9a-f]+)/.exec(sh(["pesign", "-h", "-i", file]))![1]!;

/** A copy of the PE file SRC with its COFF Machine set to arm64, as NAME in the work directory. */
function asArm64(src: string, name: string): string {
  const b = new Uint8Array(readFileSync(src));
  const peOff = new DataView(b.buffer).getUint32(0x3c, true);
  new DataView(b.buffer).setUint16(peOff + 4, ARM64.peMachine, true);
  const out = join(work, name);
  writeFileSync(out, b);
  return out;
}

test("the help of show-reference-value and config dump names both architectures' files", () => {
  const help = cli("show-reference-value", "--help").stdout;
  expect(help).toContain("amd64: UKI EFI/BOOT/BOOTX64.EFI, shimx64.efi and grubx64.efi");
  expect(help).toContain("arm64: UKI EFI/BOOT/BOOTAA64.EFI, shimaa64.efi and grubaa64.efi");
  expect(cli("config", "dump", "--help").stdout.replace(/\s+/g, " ")).toContain(
    "the UKI at EFI/BOOT/BOOTX64.EFI or EFI/BOOT/BOOTAA64.EFI",
  );
});

describe("PE machine of real files", () => {
  test("systemd's x86-64 stub is amd64; its copy with Machine 0xaa64 is arm64", () => {
    expect(peArch(parsePe(readFileSync(STUB_X64), STUB_X64).machine)).toBe(AMD64);
    expect(peArch(parsePe(readFileSync(deb.shim), deb.shim).machine)).toBe(AMD64);
    const copy = asArm64(STUB_X64, "stub-aa64");
    expect(peArch(parsePe(readFileSync(copy), copy).machine)).toBe(ARM64);
    expect(peArch(0x14c)).toBeUndefined(); // i386: not a supported architecture
  });
});

describe("arm64 GRUB disk: shimaa64.efi and grubaa64.efi in EFI/debian, shim as BOOTAA64.EFI", () => {
  const shim = asArm64(deb.shim, "shimaa64.efi");
  const grub = asArm64(deb.grub, "grubaa64.efi");
  const initrd = bytes(2000, 61);
  const boot = ext4Image(join(work, "boot.img"), 64, {
    [`vmlinuz-${V}`]: readFileSync(deb.kernel),
    [`initrd.img-${V}`]: initrd,
    "grub/grub.cfg": `menuentry 'Debian' {\n  linux /vmlinuz-${V} root=/dev/mapper/rootfs ro\n  initrd /initrd.img-${V}\n}\n`,
  });
  const disk = (name: string, files: Record<string, Uint8Array>) =>
    diskImage(join(work, `${name}.img`), "gpt", [
      { sizeMiB: 40, type: ESP_GPT, image: fatImage(join(work, `${name}-esp.img`), 40, files) },
      { sizeMiB: 64, type: LINUX_GPT, name: "boot", image: boot },
    ]);

  test("grub and shim are the aa64 files; the rest as on x86-64", () => {
    const out = showJson(
      "--disk",
      disk("arm64", {
        "EFI/debian/shimaa64.efi": readFileSync(shim),
        "EFI/debian/grubaa64.efi": readFileSync(grub),
        "EFI/BOOT/BOOTAA64.EFI": readFileSync(shim),
        "EFI/BOOT/grubaa64.efi": readFileSync(grub),
      }),
      "--hash-algo",
      "sha256",
    );
    expect(Object.keys(out)).toEqual([
      "kernel_cmdline",
      ...["kernel_cmdline", "kernel", "initrd", "grub", "shim"].map((k) => `measurement.${k}.SHA-256`),
    ]);
    expect(out.kernel_cmdline).toEqual([
      `grub_kernel_cmdline /vmlinuz-${V} root=/dev/mapper/rootfs ro`,
      `grub_kernel_cmdline (hd0,gpt2)/boot/vmlinuz-${V} root=/dev/mapper/rootfs ro`,
    ]);
    expect(out["measurement.grub.SHA-256"]).toEqual([pesign(grub)]);
    expect(out["measurement.shim.SHA-256"]).toEqual([pesign(shim)]);
  });

  test("an ESP with both architectures lists both shims and GRUBs (alternatives, x86-64 first)", () => {
    const out = showJson(
      "--disk",
      disk("both", {
        "EFI/debian/shimaa64.efi": readFileSync(shim),
        "EFI/debian/grubaa64.efi": readFileSync(grub),
        "EFI/debian/shimx64.efi": readFileSync(deb.shim),
        "EFI/debian/grubx64.efi": readFileSync(deb.grub),
      }),
      "--hash-algo",
      "sha256",
    );
    expect(out["measurement.grub.SHA-256"]).toEqual([pesign(deb.grub), pesign(grub)]);
    expect(out["measurement.shim.SHA-256"]).toEqual([pesign(deb.shim), pesign(shim)]);
  });

  test("grubaa64.efi without a shim of its architecture is no GRUB install; the message names both", () => {
    const r = cli(
      "show-reference-value",
      "--disk",
      disk("mixed", {
        "EFI/debian/grubaa64.efi": readFileSync(grub),
        "EFI/debian/shimx64.efi": readFileSync(deb.shim),
      }),
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      "no directory holding grubx64.efi together with shimx64.efi, shim.efi or BOOTX64.EFI, or grubaa64.efi together with shimaa64.efi, shim.efi or BOOTAA64.EFI",
    );
    expect(r.stderr).toContain("/EFI/BOOT/BOOTX64.EFI or /EFI/BOOT/BOOTAA64.EFI");
  });
});

describe("arm64 UKI at EFI/BOOT/BOOTAA64.EFI", () => {
  const tree = join(work, "initrd-tree");
  const fde = '[rootfs]\n[delta]\n[delta.encrypt.exec]\ncommand = "echo"\nargs = ["d"]\n';
  writeFiles(tree, { "etc/cryptpilot/fde.toml": fde });
  const initrd = join(work, "uki-initrd");
  sh(["sh", "-c", `cd "$1" && find . | cpio -o -H newc --quiet > "$2"`, "sh", tree, initrd]);
  const cmdline = join(work, "cmdline");
  writeFileSync(cmdline, "root=/dev/mapper/rootfs console=ttyAMA0\0");
  const uki = join(work, "uki-aa64.efi");
  sh([
    "objcopy",
    ...["--add-section", `.cmdline=${cmdline}`, "--change-section-vma", ".cmdline=0x30000"],
    ...["--add-section", `.linux=${deb.kernel}`, "--change-section-vma", ".linux=0x2000000"],
    ...["--add-section", `.initrd=${initrd}`, "--change-section-vma", ".initrd=0x3000000"],
    STUB_X64,
    uki,
  ]);
  const ukiAa64 = asArm64(uki, "BOOTAA64.EFI");
  const esp = fatImage(join(work, "uki-esp.img"), 40, { "EFI/BOOT/BOOTAA64.EFI": readFileSync(ukiAa64) });
  const disk = diskImage(join(work, "uki.img"), "gpt", [{ sizeMiB: 40, type: ESP_GPT, image: esp }]);

  test("show-reference-value: measurement.uki is its Authenticode digest", () => {
    expect(showJson("--disk", disk, "--hash-algo", "sha256")).toEqual({
      "measurement.uki.SHA-256": [pesign(ukiAa64)],
    });
  });

  test("config dump --disk reads fde.toml from its .initrd", () => {
    const r = cli("config", "dump", "--disk", disk);
    expect(r.stderr).not.toContain("failed");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("#cryptpilot-fde-config");
    expect(r.stdout).toContain('command = "echo"');
  });
});
