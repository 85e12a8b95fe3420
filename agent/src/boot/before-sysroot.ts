/**
 * Stage initrd-fde-before-sysroot: from the cryptpilot VG to /dev/mapper/rootfs.
 * rootfs LV -(LUKS2, optional)-> rootfs_decrypted -(dm-verity)-> rootfs_verity | rootfs
 * -(dm-snapshot over verity+zero with the delta or zram as COW)-> rootfs,
 * or with the overlayfs backend an ext4 delta that after-sysroot mounts as the upper layer.
 */
import type { FdeConfig } from "../config/index.ts";
import type { ProviderConfig } from "../config/providers/index.ts";
import * as blockdev from "../disk/blockdev.ts";
import * as dm from "../disk/dm.ts";
import { EXT4_SUPERBLOCK_BYTES, EXT4_SUPERBLOCK_OFFSET, ext4SizeBytes } from "../disk/image/ext4.ts";
import * as luks from "../disk/luks.ts";
import type { HeaderProfile } from "../disk/luks2-header.ts";
import * as N from "../disk/names.ts";
import { FdeError, KeyProviderError } from "../errors.ts";
import { log } from "../log.ts";
import type { FreshKey, KeyProvider } from "../providers/index.ts";
import { BOOT_FRESH_KEY } from "../providers/provider.ts";
import type { Step } from "../steps.ts";
import { cowAction, decideReinit, integrityGrowth, overlayWipeRange } from "./delta.ts";
import type { BootDisk, BootOps } from "./disk-ops.ts";

export interface BeforeCtx {
  provider?: string;
  configDir: string;
  fde: FdeConfig;
  /** The disks, key providers, kernel modules and clock (realBootOps() at boot, fakes in tests). */
  ops: BootOps;
  rootHash?: string;
  /** Name of the verity mapping: "rootfs" for overlayfs, "rootfs_verity" for dm-snapshot. */
  verityName: string;
  /** `[boot] ntp_servers` from global.toml, for the clock check before the first key fetch. */
  ntpServers?: string[];
  recreated?: boolean;
}

async function provider(
  ctx: BeforeCtx,
  config: ProviderConfig,
  volume: string,
  device: string,
  freshKey: FreshKey,
): Promise<KeyProvider> {
  const p = await ctx.ops.createProvider(config, { volume, configDir: ctx.configDir, device, freshKey });
  ctx.provider = p.describe();
  return p;
}

/** FN gets the key and, when the provider knows it, the keyslot it opens (see KeyProvider.keySlot). */
async function withKey<T>(
  p: KeyProvider,
  fn: (key: Uint8Array, keySlot: number | undefined) => Promise<T>,
): Promise<T> {
  const key = await p.getKey();
  if (key.length === 0) throw new KeyProviderError(p.name, "returned an empty key");
  try {
    return await fn(key, p.keySlot?.());
  } finally {
    key.fill(0);
  }
}

const COW_HEAD_BYTES = 1024 * 1024;

const diskDelta = (fde: FdeConfig) => fde.rootfs.deltaLocation !== "ram";

export function beforeSysrootSteps(fde: FdeConfig): Step<BeforeCtx>[] {
  const steps: Step<BeforeCtx>[] = [
    { title: `activating LVM volume group ${N.VG}`, run: activate },
    {
      title: "loading the dm-verity root hash (metadata.toml)",
      device: (c) => `${c.configDir}/metadata.toml`,
      run: loadRootHash,
    },
  ];
  if (fde.rootfs.encrypt || diskDelta(fde)) {
    steps.push({ title: "checking the clock before the first key fetch", run: checkClock });
  }
  if (fde.rootfs.encrypt) {
    steps.push({ title: "unlocking the encrypted rootfs", device: () => N.LV_ROOTFS, run: unlockRootfs });
  }
  steps.push({ title: "opening dm-verity", device: () => N.LV_ROOTFS_HASH, run: openVerity });
  if (diskDelta(fde)) {
    steps.push({
      title: "growing the disk partition and the delta volume",
      device: () => N.LV_DELTA,
      run: growDelta,
    });
    steps.push({ title: "unlocking the delta volume", device: () => N.LV_DELTA, run: unlockDelta });
  }
  if (fde.rootfs.deltaBackend === "dm-snapshot") {
    steps.push({
      title: "building the writable root (dm-snapshot)",
      device: () => N.ROOT_DEVICE,
      run: buildSnapshot,
    });
  } else if (diskDelta(fde)) {
    steps.push({
      title: "preparing the overlay filesystem on the delta volume",
      device: () => N.mapper(N.DELTA),
      run: prepareOverlayDelta,
    });
  }
  return steps;
}

/** How long to wait for the disk with the cryptpilot VG, as systemd-udev-settle's default. */
const VG_WAIT_MS = 180_000;

/** Whether a key provider of this boot collects TEE evidence (kbs attests; the others do not). */
export const attests = (fde: FdeConfig): boolean =>
  [fde.rootfs.encrypt, fde.delta.encrypt].some((p) => p?.type === "kbs");

async function activate(ctx: BeforeCtx): Promise<void> {
  const { lvm } = ctx.ops.disk;
  await ctx.ops.loadModules({ tee: attests(ctx.fde) });
  const waited = await lvm.waitForVg(N.VG, {
    timeoutMs: VG_WAIT_MS,
    onWait: () => log.info(`  waiting for the disk with volume group ${N.VG} ...`),
  });
  if (waited >= 1000) log.info(`  the disk appeared after ${(waited / 1000).toFixed(1)} s`);
  await lvm.activateVg(N.VG);
}

async function loadRootHash(ctx: BeforeCtx): Promise<void> {
  const { loadMetadata } = await import("../config/index.ts");
  ctx.rootHash = (await loadMetadata(ctx.configDir)).rootHash;
}

/**
 * TLS to a KBS and signed KMS/STS requests fail on a clock that is years off: sync it when NTP
 * servers are configured or it is before the build time (clock/sync.ts). Never fails the boot.
 */
async function checkClock(ctx: BeforeCtx): Promise<void> {
  await ctx.ops.syncClock(ctx.ntpServers ?? []);
}

async function unlockRootfs(ctx: BeforeCtx): Promise<void> {
  const p = await provider(ctx, ctx.fde.rootfs.encrypt!, "rootfs", N.LV_ROOTFS, BOOT_FRESH_KEY.rootfs);
  if (p.temporary) {
    throw new KeyProviderError(p.name, "makes a new key every boot and cannot unlock the rootfs", {
      hint: "configure a persistent provider in [rootfs.encrypt]",
    });
  }
  // Checked before any key is fetched. convert's encryptOffline writes no integrity (verity checks the data).
  const profile = { integrity: false };
  const disk = ctx.ops.disk;
  const checked = await disk.luks.readCheckedHeader(N.LV_ROOTFS, profile);
  await withKey(p, (key, keySlot) =>
    disk.luks.openChecked(N.LV_ROOTFS, N.ROOTFS_DECRYPTED, key, { profile, keySlot, checked }),
  );
  ctx.provider = undefined;
}

async function openVerity(ctx: BeforeCtx): Promise<void> {
  const data = ctx.fde.rootfs.encrypt ? N.mapper(N.ROOTFS_DECRYPTED) : N.LV_ROOTFS;
  await ctx.ops.disk.openVerity(data, ctx.verityName, N.LV_ROOTFS_HASH, ctx.rootHash!);
}

async function growDelta(ctx: BeforeCtx): Promise<void> {
  const { lvm, block } = ctx.ops.disk;
  // Growing is best effort (as upstream): the boot goes on with the space there is.
  try {
    for (const pv of await lvm.pvsOfVg(N.VG)) {
      const part = await block.partitionOf(pv);
      if (part && blockdev.canGrow(part)) {
        await block.growPartition(part);
        log.info(`  grew ${part.disk} partition ${part.number} to the end of the disk`);
      }
      await lvm.pvResize(pv);
    }
  } catch (err) {
    log.warn(`could not grow the PV partition: ${(err as Error).message}`);
  }
  if (!(await lvm.lvExists(N.VG, N.DELTA_LV_NAME))) {
    await lvm.createLvAllFree(N.VG, N.DELTA_LV_NAME);
    // Nothing (no udev) wipes old signatures in the initrd: a stale LUKS/COW header must not survive.
    await block.zeroHead(N.LV_DELTA);
    log.info("  created the delta volume (first boot)");
  } else {
    try {
      const before = await block.sizeSectors(N.LV_DELTA);
      if (await lvm.extendLvAllFree(N.VG, N.DELTA_LV_NAME)) {
        const after = await block.sizeSectors(N.LV_DELTA);
        log.info(`  extended the delta LV from ${gib(before)} to ${gib(after)} GiB`);
      }
    } catch (err) {
      log.warn(`could not extend the delta volume: ${(err as Error).message}`);
    }
  }
}

async function unlockDelta(ctx: BeforeCtx): Promise<void> {
  const p = await provider(ctx, ctx.fde.delta.encrypt, "delta", N.LV_DELTA, BOOT_FRESH_KEY.delta);
  const disk = ctx.ops.disk;
  const decision = decideReinit({
    temporaryKey: p.temporary,
    subsystem: await disk.luks.readSubsystem(N.LV_DELTA),
    location: ctx.fde.rootfs.deltaLocation,
  });
  ctx.recreated = decision.recreate;
  log.info(`  ${decision.recreate ? "initialising" : "opening"}: ${decision.reason}`);
  const profile = { integrity: ctx.fde.delta.integrity };
  // A persistent delta with a replaced header is refused here, before any key is fetched; it is
  // never reformatted (its data stays for a header restore).
  const checked = decision.recreate ? undefined : await disk.luks.readCheckedHeader(N.LV_DELTA, profile);
  await withKey(p, async (key, keySlot) => {
    if (decision.recreate) {
      await disk.luks.format(N.LV_DELTA, key, {
        integrity: ctx.fde.delta.integrity,
        // dm-snapshot reads only what it wrote; mkfs.ext4 on an unwiped integrity device would read garbage tags.
        integrityNoWipe: ctx.fde.rootfs.deltaBackend === "dm-snapshot",
        subsystem: luks.SUBSYSTEM_INITIALIZING,
        // A per-boot random key gains nothing from a slow, benchmarked PBKDF.
        randomKey: p.temporary,
      });
      // tpm2: store the sealed key in the new header while it is still marked initializing.
      await p.afterFormat?.(N.LV_DELTA);
      // Checked too: the host can swap the header between our format and this open.
      await disk.luks.openChecked(N.LV_DELTA, N.DELTA, key, { profile });
      return;
    }
    try {
      await disk.luks.openChecked(N.LV_DELTA, N.DELTA, key, { profile, keySlot, checked });
    } catch (cause) {
      throw new FdeError(
        `cannot open the persistent delta volume ${N.LV_DELTA} with the key from ${p.describe()}`,
        {
          cause,
          hint: "the delta keeps the data written in earlier boots, so it is never reformatted on a failed unlock; make the provider return the key the volume was created with",
        },
      );
    }
    if (ctx.fde.delta.integrity) await growIntegrityDelta(disk, key, keySlot, profile);
  });
  ctx.provider = undefined;
}

/**
 * A persistent integrity delta on a grown LV: cryptsetup opened it at the size its dm-integrity
 * superblock had, and the kernel (dm-integrity 1.6+) wrote the larger size the LV allows into that
 * superblock while activating it. Opening it again gives both mappings the new size. cryptsetup
 * 2.6.1 cannot do it in place: `resize` refuses integrity ("Unsupported parameters") and `refresh`
 * grows only the _dif mapping, keeping the crypt table's old length. Best effort up to the close:
 * the delta keeps its size if the check or the close fails.
 */
async function growIntegrityDelta(
  disk: BootDisk,
  key: Uint8Array,
  keySlot: number | undefined,
  profile: HeaderProfile,
): Promise<void> {
  let growth: ReturnType<typeof integrityGrowth>;
  try {
    growth = integrityGrowth(await disk.luks.integritySize(N.DELTA));
    if (!growth) return;
    await disk.luks.close(N.DELTA);
  } catch (err) {
    log.warn(
      `could not grow the delta volume's integrity mapping; it keeps its size: ${(err as Error).message}`,
    );
    return;
  }
  try {
    await disk.luks.openChecked(N.LV_DELTA, N.DELTA, key, { profile, keySlot });
  } catch (cause) {
    throw new FdeError(`cannot open the delta volume ${N.LV_DELTA} again after closing it to grow it`, {
      cause,
      hint: "the same key opened it a moment before; its data is unchanged, so boot again",
    });
  }
  const now = await disk.block.sizeSectors(N.mapper(N.DELTA));
  if (now < growth.toSectors) {
    log.warn(
      `the delta volume has ${now} sectors after re-opening it, not the ${growth.toSectors} it can hold`,
    );
  } else {
    log.info(`  grew the delta volume (dm-integrity) from ${gib(growth.fromSectors)} to ${gib(now)} GiB`);
  }
}

async function buildSnapshot(ctx: BeforeCtx): Promise<void> {
  const disk = ctx.ops.disk;
  const persistent = ctx.fde.rootfs.deltaLocation === "disk-persist";
  const cow = diskDelta(ctx.fde) ? N.mapper(N.DELTA) : await disk.block.createZram();
  const verityDev = N.mapper(N.ROOTFS_VERITY);
  const veritySectors = await disk.block.sizeSectors(verityDev);
  const cowSectors = await disk.block.sizeSectors(cow);
  await disk.dmCreate(N.ROOTFS_EXTENDED, dm.extendedTable(verityDev, veritySectors, cowSectors));
  const recreated = ctx.recreated ?? true;
  const action = cowAction({
    persistent,
    recreated,
    blkidType: persistent && !recreated ? await disk.block.cowSignature(cow) : undefined,
  });
  // More than the 8 KiB header chunk: on an unwiped integrity device every block the snapshot
  // reads before writing it must have been written once.
  if (action === "zero") await disk.block.zeroHead(cow, COW_HEAD_BYTES);
  log.info(
    `  COW ${cow}: ${action === "keep" ? "kept from the previous boot" : "new"}${persistent ? " (persistent)" : ""}`,
  );
  await disk.dmCreate(
    N.ROOTFS,
    dm.snapshotTable(N.mapper(N.ROOTFS_EXTENDED), veritySectors + cowSectors, cow, persistent),
  );
  await growFs(disk, N.ROOT_DEVICE);
  await markInitialised(ctx);
}

async function prepareOverlayDelta(ctx: BeforeCtx): Promise<void> {
  const disk = ctx.ops.disk;
  const dev = N.mapper(N.DELTA);
  if (ctx.recreated) {
    await disk.fs.mkfsExt4(dev);
  } else {
    await growFs(disk, dev, !ctx.fde.delta.integrity || (await wipeBeyondFs(disk, dev)));
  }
  await markInitialised(ctx);
}

/**
 * Before an ext4 on an integrity delta grows, the device beyond it gets valid tags (see
 * overlayWipeRange). False when that failed: the filesystem then keeps its size this boot.
 */
async function wipeBeyondFs(disk: BootDisk, dev: string): Promise<boolean> {
  try {
    const head = await disk.block.readHead(dev, EXT4_SUPERBLOCK_OFFSET + EXT4_SUPERBLOCK_BYTES);
    const fsBytes = ext4SizeBytes(head.subarray(EXT4_SUPERBLOCK_OFFSET));
    if (fsBytes === undefined) throw new FdeError(`no ext4 superblock on ${dev}`);
    const range = overlayWipeRange(fsBytes, (await disk.block.sizeSectors(dev)) * 512);
    if (!range) return true;
    log.info(
      `  writing integrity tags over the ${gib((range.end - range.start) / 512)} GiB the filesystem grows into`,
    );
    await disk.luks.wipeIntegrityRange(dev, range.start, range.end);
    return true;
  } catch (err) {
    log.warn(
      `could not prepare the grown delta for its filesystem; it keeps its size: ${(err as Error).message}`,
    );
    return false;
  }
}

/** Writable, checked, and (when `resize`) as large as its device. */
async function growFs(disk: BootDisk, dev: string, resize = true): Promise<void> {
  await disk.fs.makeWritable(dev);
  await disk.fs.check(dev);
  if (resize) await disk.fs.resize(dev);
}

const gib = (sectors: number) => ((sectors * 512) / 2 ** 30).toFixed(2);

async function markInitialised(ctx: BeforeCtx): Promise<void> {
  if (ctx.recreated && diskDelta(ctx.fde)) {
    await ctx.ops.disk.luks.setSubsystem(N.LV_DELTA, luks.SUBSYSTEM_READY);
  }
}
