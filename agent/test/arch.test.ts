/**
 * arch.ts: the per-architecture names, and the ELF machine of the real executables this tree
 * builds (dist/cryptpilot-fde is x86-64; dist/cryptpilot-fde-arm64, from `make build-arm64`, aarch64).
 */
import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  AMD64,
  ARCHES,
  ARM64,
  archName,
  efiBootName,
  efiBootPath,
  grubName,
  hostArch,
  mokManagerName,
  readElfArch,
  shimName,
  systemdStubPath,
} from "../src/arch.ts";
import { FdeError } from "../src/errors.ts";

const DIST = join(import.meta.dir, "../../dist");

describe("per-architecture names", () => {
  test("x86-64 and arm64 as Debian, UEFI and systemd spell them", () => {
    expect([AMD64, ARM64].map((a) => [a.debian, a.uname, a.node, a.elfMachine, a.peMachine])).toEqual([
      ["amd64", "x86_64", "x64", 62, 0x8664],
      ["arm64", "aarch64", "arm64", 183, 0xaa64],
    ]);
    expect(ARCHES.map((a) => [efiBootPath(a), shimName(a), grubName(a), mokManagerName(a)])).toEqual([
      ["/EFI/BOOT/BOOTX64.EFI", "shimx64.efi", "grubx64.efi", "mmx64.efi"],
      ["/EFI/BOOT/BOOTAA64.EFI", "shimaa64.efi", "grubaa64.efi", "mmaa64.efi"],
    ]);
    expect(efiBootName(ARM64)).toBe("BOOTAA64.EFI");
    expect(systemdStubPath(AMD64)).toBe("/usr/lib/systemd/boot/efi/linuxx64.efi.stub");
    expect(systemdStubPath(ARM64)).toBe("/usr/lib/systemd/boot/efi/linuxaa64.efi.stub");
    expect(archName(ARM64)).toBe("arm64 (aarch64)");
  });

  test("the host's architecture; an unsupported one is a named error", () => {
    expect(hostArch("x64")).toBe(AMD64);
    expect(hostArch("arm64")).toBe(ARM64);
    expect(ARCHES).toContain(hostArch());
    expect(() => hostArch("riscv64")).toThrow(FdeError);
    expect(() => hostArch("riscv64")).toThrow(
      "this host's architecture riscv64 is not one cryptpilot-fde supports (amd64 (x86_64), arm64 (aarch64))",
    );
  });
});

describe("ELF machine of real executables", () => {
  test("this host's own executables are its architecture", () => {
    expect(readElfArch("/bin/true")).toBe(hostArch());
    expect(readElfArch(process.execPath)).toBe(hostArch());
  });

  test.skipIf(!existsSync(join(DIST, "cryptpilot-fde")))("dist/cryptpilot-fde is x86-64", () => {
    expect(readElfArch(join(DIST, "cryptpilot-fde"))).toBe(AMD64);
  });

  test("dist/cryptpilot-fde-arm64 (make build-arm64) is aarch64", () => {
    // A no-op when the executable is newer than the sources (make's own rule); packaging/arm64.test.ts
    // builds it the same way.
    const b = Bun.spawnSync(["make", "-s", "build-arm64"], { cwd: join(DIST, ".."), stderr: "pipe" });
    expect(b.exitCode, `make build-arm64 failed: ${b.stderr.toString()}`).toBe(0);
    expect(readElfArch(join(DIST, "cryptpilot-fde-arm64"))).toBe(ARM64);
  }, 300_000);
});
