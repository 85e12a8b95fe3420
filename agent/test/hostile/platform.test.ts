/**
 * TEE detection (attest/platform.ts) stays bounded whatever the files it reads hold: /proc/cpuinfo
 * is read up to CPUINFO_READ_MAX only (a VM with hundreds of CPUs, or a crafted sysRoot), and a
 * TEE guest without its interface is refused in bounded time with a paragraph, not a stack trace.
 */
import { afterAll, expect, test } from "bun:test";
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { selectAttester } from "../../src/attest/index.ts";
import { CPUINFO_READ_MAX, detectPlatform } from "../../src/attest/platform.ts";
import { FdeError, formatError } from "../../src/errors.ts";
import { bounded } from "./limits.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A sysRoot whose /proc/cpuinfo is `size` bytes, sparse, with `text` at `at`. */
function sysWithCpuinfo(size: number, text: string, at: number): string {
  const root = mkdtempSync(join(tmpdir(), "hostile-platform-"));
  dirs.push(root);
  mkdirSync(join(root, "proc"));
  const fd = openSync(join(root, "proc/cpuinfo"), "w");
  writeSync(fd, text, at);
  writeSync(fd, "\n", size - 1);
  closeSync(fd);
  return root;
}

const MIB = 1024 * 1024;

test("a 512 MiB cpuinfo: read up to the bound only, in bounded time and memory", async () => {
  const sys = sysWithCpuinfo(512 * MIB, "flags\t\t: fpu tdx_guest\n", 0);
  const info = await bounded(() => detectPlatform({ tsmRoot: join(sys, "nope/tsm"), sysRoot: sys }), {
    ms: 3000,
    mib: 64,
  });
  expect(info.platform).toBe("tdx");
  // The same flag beyond the bound is not looked at.
  const far = sysWithCpuinfo(512 * MIB, "flags\t\t: fpu tdx_guest\n", 4 * CPUINFO_READ_MAX);
  const none = await bounded(() => detectPlatform({ tsmRoot: join(far, "nope/tsm"), sysRoot: far }), {
    ms: 3000,
    mib: 64,
  });
  expect(none.platform).toBe("none");
});

test("a flags line of 1 MiB of flags: bounded, and the error is one paragraph", async () => {
  const flags = `flags\t\t: ${"x ".repeat(MIB / 2)}tdx_guest\n`;
  const sys = sysWithCpuinfo(2 * MIB, flags, 0);
  // tdx_guest lies past the bound: no TDX sign, no TPM: "no TEE found", quickly.
  const err = await bounded(
    () =>
      selectAttester({ paths: { tsmRoot: join(sys, "nope/tsm"), sysRoot: sys }, env: {} }).catch((e) => e),
    { ms: 3000, mib: 64 },
  );
  expect(err).toBeInstanceOf(FdeError);
  const text = formatError(err);
  expect(text).toContain("no TEE found");
  expect(text).not.toContain("    at ");
});
