/**
 * Stage initrd-fde-after-sysroot: check that /sysroot really is our root device, and with the
 * overlayfs backend put the overlay (upper layer on the delta, or in RAM) over /sysroot.
 */
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, realpath } from "node:fs/promises";
import { join } from "node:path";
import type { FdeConfig } from "../config/index.ts";
import * as N from "../disk/names.ts";
import { FdeError } from "../errors.ts";
import { log } from "../log.ts";
import type { Step } from "../steps.ts";
import type { MountOps } from "./disk-ops.ts";

export interface AfterCtx {
  provider?: string;
  fde: FdeConfig;
  sysroot: string;
  /** Where the stage mounts its helpers (the delta, the lower rootfs, the tmpfs upper). */
  runDir: string;
  mountsFile: string;
  /** mount and cp (realMountOps at boot, a recorder in tests). */
  mounts: MountOps;
}

/** Directories container runtimes keep on a real filesystem (overlay-on-overlay does not work). */
export const CONTAINER_DIRS = [
  "var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots",
  "var/lib/containers",
  "var/lib/docker",
];

/** Source of the mount at MOUNTPOINT in /proc/self/mounts text (the last one wins, like the kernel's view). */
export function mountSource(mounts: string, mountpoint: string): string | undefined {
  let source: string | undefined;
  for (const line of mounts.split("\n")) {
    const f = line.split(" ");
    if (f[1] === mountpoint) source = f[0]?.replace(/\\040/g, " ");
  }
  return source;
}

export function afterSysrootSteps(fde: FdeConfig): Step<AfterCtx>[] {
  const steps: Step<AfterCtx>[] = [
    { title: `checking that /sysroot is ${N.ROOT_DEVICE}`, device: (c) => c.sysroot, run: checkSysroot },
  ];
  if (fde.rootfs.deltaBackend === "overlayfs") {
    steps.push({ title: "mounting the overlay over /sysroot", device: (c) => c.sysroot, run: mountOverlay });
    steps.push({
      title: "binding container storage directories",
      device: (c) => c.sysroot,
      run: bindContainerDirs,
    });
  }
  return steps;
}

async function checkSysroot(ctx: AfterCtx): Promise<void> {
  const source = mountSource(await readFile(ctx.mountsFile, "utf8"), ctx.sysroot);
  if (!source) throw new FdeError(`${ctx.sysroot} is not mounted`);
  const resolve = (p: string) => realpath(p).catch(() => p);
  if (source !== N.ROOT_DEVICE && (await resolve(source)) !== (await resolve(N.ROOT_DEVICE))) {
    throw new FdeError(
      `${ctx.sysroot} is mounted from ${source}, not ${N.ROOT_DEVICE}: refusing to boot an unverified root`,
      {
        hint: `the kernel command line must say root=${N.ROOT_DEVICE} (convert writes it into every boot entry)`,
      },
    );
  }
}

const upperBase = (ctx: AfterCtx) =>
  ctx.fde.rootfs.deltaLocation === "ram"
    ? join(ctx.runDir, "ram_overlay")
    : join(ctx.runDir, "delta", "overlay");

async function mountOverlay(ctx: AfterCtx): Promise<void> {
  if (ctx.fde.rootfs.deltaLocation === "ram") {
    // No delta volume in RAM mode (upstream mounts /dev/mapper/delta here regardless and fails).
    await mkdir(upperBase(ctx), { recursive: true });
    await ctx.mounts.mount(["-t", "tmpfs", "-o", "mode=0755", "tmpfs", upperBase(ctx)]);
  } else {
    const deltaMount = join(ctx.runDir, "delta");
    await mkdir(deltaMount, { recursive: true });
    await ctx.mounts.mount([N.mapper(N.DELTA), deltaMount]);
  }
  const base = upperBase(ctx);
  await mkdir(join(base, "upper"), { recursive: true });
  await mkdir(join(base, "work"), { recursive: true });
  const lower = join(ctx.runDir, "lower");
  await mkdir(lower, { recursive: true });
  await ctx.mounts.mount(["--bind", ctx.sysroot, lower]);
  await ctx.mounts.mount(["--make-private", lower]);
  await ctx.mounts.mount([
    "-t",
    "overlay",
    N.ROOT_DEVICE,
    "-o",
    `lowerdir=${lower},upperdir=${join(base, "upper")},workdir=${join(base, "work")}`,
    ctx.sysroot,
  ]);
}

async function bindContainerDirs(ctx: AfterCtx): Promise<void> {
  const lower = join(ctx.runDir, "lower");
  for (const dir of CONTAINER_DIRS) {
    try {
      const store = join(upperBase(ctx), "mount-binds", dir);
      if (!existsSync(store)) {
        await mkdir(store, { recursive: true });
        const from = join(lower, dir);
        if (existsSync(from) && (await readdir(from)).length > 0) await ctx.mounts.copyTree(from, store);
      }
      const target = join(ctx.sysroot, dir);
      await mkdir(target, { recursive: true });
      await ctx.mounts.mount(["--bind", store, target]);
    } catch (err) {
      log.warn(`could not bind ${dir}: ${(err as Error).message}`);
    }
  }
}
