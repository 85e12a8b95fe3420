// waitForVg with the real lvm tools and a private lvm.conf (no activation: the host has no dm).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { privateLvmConf, waitForVg } from "../../src/disk/lvm.ts";
import { FdeError } from "../../src/errors.ts";

function sh(cmd: string[]): string {
  const p = Bun.spawnSync(cmd, { stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${p.stderr.toString()}`);
  return p.stdout.toString();
}

describe("waitForVg", () => {
  const dir = mkdtempSync(join(tmpdir(), "cp-lvmwait-"));
  const vg = `cpwait${process.pid}`;
  let loop = "";

  beforeAll(() => {
    const pv = join(dir, "pv.img");
    sh(["truncate", "-s", "16M", pv]);
    loop = sh(["losetup", "-f", "--show", pv]).trim();
    writeFileSync(join(dir, "lvm.conf"), privateLvmConf(loop));
  });
  afterAll(() => {
    Bun.spawnSync(["losetup", "-d", loop]);
    rmSync(dir, { recursive: true, force: true });
  });

  test("gives up after the timeout, naming the volume group, and says once that it waits", async () => {
    let announced = 0;
    const started = performance.now();
    const err = await waitForVg({ systemDir: dir }, vg, {
      timeoutMs: 600,
      intervalMs: 100,
      onWait: () => announced++,
    }).catch((e) => e);
    expect(err).toBeInstanceOf(FdeError);
    expect((err as FdeError).message).toContain(`no disk with the LVM volume group "${vg}" appeared`);
    expect((err as FdeError).hint).toContain("lvm pvs");
    expect(announced).toBe(1);
    expect(performance.now() - started).toBeGreaterThanOrEqual(600);
  });

  test("returns at once when the disk with the VG is there", async () => {
    const env = { ...process.env, LVM_SYSTEM_DIR: dir };
    for (const args of [
      ["pvcreate", "-q", loop],
      ["vgcreate", "-q", vg, loop],
    ]) {
      const p = Bun.spawnSync(["lvm", ...args], { env, stderr: "pipe" });
      expect(p.exitCode, p.stderr.toString()).toBe(0);
    }
    let announced = 0;
    const waited = await waitForVg({ systemDir: dir }, vg, { timeoutMs: 5000, onWait: () => announced++ });
    expect(announced).toBe(0);
    expect(waited).toBeLessThan(5000);
  });
});
