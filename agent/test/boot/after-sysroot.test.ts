/**
 * The after-sysroot stage against a recording MountOps and temporary directories: it refuses a
 * /sysroot that is not our root device, and puts the overlay (upper on the delta, or in RAM)
 * and the container directories' binds together with the mounts the VM scenarios rely on.
 */
import { afterEach, beforeEach, describe, expect, type Mock, spyOn, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AfterCtx, afterSysrootSteps, CONTAINER_DIRS } from "../../src/boot/after-sysroot.ts";
import type { MountOps } from "../../src/boot/disk-ops.ts";
import type { FdeConfig } from "../../src/config/index.ts";
import * as N from "../../src/disk/names.ts";
import { runSteps, StepsFailed } from "../../src/steps.ts";

let dir: string;
let logSpy: Mock<typeof console.error>;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "after-sysroot-"));
  logSpy = spyOn(console, "error").mockImplementation(() => {});
});
afterEach(() => {
  logSpy.mockRestore();
  rmSync(dir, { recursive: true, force: true });
});

const cfg = (
  deltaLocation: FdeConfig["rootfs"]["deltaLocation"],
  deltaBackend: FdeConfig["rootfs"]["deltaBackend"],
) => ({ rootfs: { deltaLocation, deltaBackend }, delta: { integrity: false } }) as unknown as FdeConfig;

interface Recorder extends MountOps {
  calls: string[];
}

function recorder(failOn?: (args: string[]) => boolean): Recorder {
  const calls: string[] = [];
  return {
    calls,
    mount: async (args) => {
      calls.push(`mount ${args.join(" ")}`);
      if (failOn?.(args)) throw new Error(`mount ${args.join(" ")}: permission denied`);
    },
    copyTree: async (from, to) => {
      calls.push(`copy ${from} ${to}`);
    },
  };
}

async function stage(fde: FdeConfig, source: string, mounts: Recorder): Promise<StepsFailed | undefined> {
  const sysroot = join(dir, "sysroot");
  mkdirSync(sysroot, { recursive: true });
  const mountsFile = join(dir, "mounts");
  writeFileSync(mountsFile, `/dev/vda1 / ext4 rw 0 0\n${source} ${sysroot} ext4 ro 0 0\n`);
  const ctx: AfterCtx = { fde, sysroot, runDir: join(dir, "run"), mountsFile, mounts };
  try {
    await runSteps("after-sysroot", afterSysrootSteps(fde), ctx, () => {});
    return undefined;
  } catch (err) {
    if (err instanceof StepsFailed) return err;
    throw err;
  }
}

describe("after-sysroot", () => {
  test("a /sysroot from another device is refused before any mount", async () => {
    const mounts = recorder();
    const err = await stage(cfg("disk-persist", "overlayfs"), "/dev/vdb1", mounts);
    expect(err?.message).toContain("refusing to boot an unverified root");
    expect(err?.failure.index).toBe(1);
    expect(mounts.calls).toEqual([]);
  });

  test("dm-snapshot: the check only, nothing mounted", async () => {
    const mounts = recorder();
    expect(await stage(cfg("disk", "dm-snapshot"), N.ROOT_DEVICE, mounts)).toBeUndefined();
    expect(mounts.calls).toEqual([]);
  });

  test("overlayfs on disk: the delta holds the upper layer, the lower is a private bind of /sysroot", async () => {
    const mounts = recorder();
    expect(await stage(cfg("disk-persist", "overlayfs"), N.ROOT_DEVICE, mounts)).toBeUndefined();
    const run = join(dir, "run");
    const sysroot = join(dir, "sysroot");
    const upper = join(run, "delta", "overlay");
    expect(mounts.calls.slice(0, 4)).toEqual([
      `mount ${N.mapper(N.DELTA)} ${join(run, "delta")}`,
      `mount --bind ${sysroot} ${join(run, "lower")}`,
      `mount --make-private ${join(run, "lower")}`,
      `mount -t overlay ${N.ROOT_DEVICE} -o lowerdir=${join(run, "lower")},upperdir=${upper}/upper,workdir=${upper}/work ${sysroot}`,
    ]);
    // Each container directory: bound from the delta's store onto the overlay root.
    const binds = mounts.calls.slice(4);
    expect(binds).toEqual(
      CONTAINER_DIRS.map((d) => `mount --bind ${join(upper, "mount-binds", d)} ${join(sysroot, d)}`),
    );
  });

  test("overlayfs in RAM: a tmpfs upper, the delta volume is not mounted", async () => {
    const mounts = recorder();
    expect(await stage(cfg("ram", "overlayfs"), N.ROOT_DEVICE, mounts)).toBeUndefined();
    expect(mounts.calls[0]).toBe(`mount -t tmpfs -o mode=0755 tmpfs ${join(dir, "run", "ram_overlay")}`);
    expect(mounts.calls.some((c) => c.includes(N.mapper(N.DELTA)))).toBe(false);
  });

  test("a container directory with content is copied into a new store once; a failed bind only warns", async () => {
    const lowerDocker = join(dir, "run", "lower", "var/lib/docker");
    mkdirSync(lowerDocker, { recursive: true });
    writeFileSync(join(lowerDocker, "x"), "");
    const mounts = recorder((args) => args[1]?.endsWith("var/lib/containers") ?? false);
    expect(await stage(cfg("disk-persist", "overlayfs"), N.ROOT_DEVICE, mounts)).toBeUndefined();
    const store = join(dir, "run", "delta", "overlay", "mount-binds", "var/lib/docker");
    expect(mounts.calls.filter((c) => c.startsWith("copy"))).toEqual([`copy ${lowerDocker} ${store}`]);
    expect(existsSync(store)).toBe(true);
    const warned = logSpy.mock.calls.map((c) => String(c[1])).join("\n");
    expect(warned).toContain("could not bind var/lib/containers");
    // The failure of one bind does not stop the next.
    expect(mounts.calls.at(-1)).toContain("var/lib/docker");
  });
});
