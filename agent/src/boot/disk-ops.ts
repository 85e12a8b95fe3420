/**
 * What the before-sysroot steps do to disks and the system, as one interface passed in through
 * the step context (as Constellation's disk-mapper passes its device mapper): the steps keep the
 * decisions and error paths, this interface does the I/O. boot/index.ts passes realBootOps();
 * unit tests pass fakes, so the decisions are tested in milliseconds instead of VM boots.
 *
 * Each operation is one call of a disk/ module (or one external tool), with the same arguments
 * and errors; nothing here decides anything.
 */
import { open as openFile, readFile } from "node:fs/promises";
import { run } from "../command.ts";
import type { ProviderConfig } from "../config/providers/index.ts";
import * as blockdev from "../disk/blockdev.ts";
import * as dm from "../disk/dm.ts";
import * as luks from "../disk/luks.ts";
import {
  type CheckedHeader,
  type HeaderProfile,
  type OpenCheckedOptions,
  openChecked,
  readCheckedHeader,
} from "../disk/luks2-header.ts";
import * as lvm from "../disk/lvm.ts";
import * as verity from "../disk/verity.ts";
import { createProvider, type KeyProvider, type ProviderContext } from "../providers/index.ts";
import { type LoadModulesOptions, loadModules } from "./kernel-modules.ts";

/** LVM, bound to the LVM configuration the stage runs with (GUEST_LVM_SYSTEM_DIR in the initrd). */
export interface LvmOps {
  /** Milliseconds waited; throws FdeError after timeoutMs. */
  waitForVg(vg: string, opts: { timeoutMs: number; onWait?: () => void }): Promise<number>;
  activateVg(vg: string): Promise<void>;
  pvsOfVg(vg: string): Promise<string[]>;
  pvResize(pv: string): Promise<void>;
  lvExists(vg: string, lv: string): Promise<boolean>;
  createLvAllFree(vg: string, lv: string): Promise<void>;
  /** True when the LV grew. */
  extendLvAllFree(vg: string, lv: string): Promise<boolean>;
}

export interface BlockOps {
  partitionOf(device: string): Promise<blockdev.PartitionOf | undefined>;
  growPartition(part: blockdev.PartitionOf): Promise<void>;
  sizeSectors(device: string): Promise<number>;
  /** Zero the first BYTES of DEVICE (blockdev.zeroHead's default when omitted). */
  zeroHead(device: string, bytes?: number): Promise<void>;
  /** The first BYTES of DEVICE (fewer when it is shorter). */
  readHead(device: string, bytes: number): Promise<Uint8Array>;
  /** "DM_snapshot_cow", another blkid type, or undefined for none. */
  cowSignature(device: string): Promise<string | undefined>;
  /** A zram device sized from the guest's memory, for a COW in RAM. */
  createZram(): Promise<string>;
}

export interface LuksOps {
  readSubsystem(device: string): Promise<string | undefined>;
  setSubsystem(device: string, subsystem: string): Promise<void>;
  /** The header policy check (luks2-header.ts); throws before any key is fetched. */
  readCheckedHeader(device: string, profile: HeaderProfile): Promise<CheckedHeader>;
  /** Key on cryptsetup's stdin, never in argv. */
  openChecked(device: string, name: string, key: Uint8Array, opts: OpenCheckedOptions): Promise<void>;
  /** Key on cryptsetup's stdin, never in argv. */
  format(device: string, key: Uint8Array, opts: luks.LuksFormatOptions): Promise<void>;
  close(name: string): Promise<void>;
  integritySize(name: string): Promise<luks.IntegritySize>;
  wipeIntegrityRange(device: string, start: number, end: number): Promise<void>;
}

/** The ext4 tools the delta and the snapshot root need. */
export interface FsOps {
  mkfsExt4(device: string): Promise<void>;
  /** Clear the read-only feature convert sets on the rootfs image. */
  makeWritable(device: string): Promise<void>;
  /** e2fsck -p: fixes what is safe, fails on what is not. */
  check(device: string): Promise<void>;
  /** Grow the filesystem to its device. */
  resize(device: string): Promise<void>;
}

export interface BootDisk {
  lvm: LvmOps;
  block: BlockOps;
  luks: LuksOps;
  openVerity(dataDevice: string, name: string, hashDevice: string, rootHash: string): Promise<void>;
  dmCreate(name: string, table: string): Promise<void>;
  fs: FsOps;
}

/** Everything before-sysroot reaches outside its own code: the disks, key providers, modules, clock. */
export interface BootOps {
  disk: BootDisk;
  createProvider(config: ProviderConfig, ctx: ProviderContext): Promise<KeyProvider>;
  loadModules(options: LoadModulesOptions): Promise<void>;
  /** clock/sync.ts syncClock with the real clock; never fails the boot. */
  syncClock(ntpServers: string[]): Promise<void>;
}

async function readHead(device: string, bytes: number): Promise<Uint8Array> {
  const head = new Uint8Array(bytes);
  const fh = await openFile(device, "r");
  try {
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    return head.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

export function realBootDisk(lvmCtx: lvm.LvmContext): BootDisk {
  return {
    lvm: {
      waitForVg: (vg, opts) => lvm.waitForVg(lvmCtx, vg, opts),
      activateVg: (vg) => lvm.activateVg(lvmCtx, vg),
      pvsOfVg: (vg) => lvm.pvsOfVg(lvmCtx, vg),
      pvResize: (pv) => lvm.pvResize(lvmCtx, pv),
      lvExists: (vg, lv) => lvm.lvExists(lvmCtx, vg, lv),
      createLvAllFree: (vg, lv) => lvm.createLvAllFree(lvmCtx, vg, lv),
      extendLvAllFree: (vg, lv) => lvm.extendLvAllFree(lvmCtx, vg, lv),
    },
    block: {
      partitionOf: blockdev.partitionOf,
      growPartition: blockdev.growPartition,
      sizeSectors: blockdev.sizeSectors,
      zeroHead: blockdev.zeroHead,
      readHead,
      cowSignature: blockdev.cowSignature,
      createZram: async () =>
        blockdev.createZram(blockdev.parseMemTotal(await readFile("/proc/meminfo", "utf8"))),
    },
    luks: {
      readSubsystem: luks.readSubsystem,
      setSubsystem: luks.setSubsystem,
      readCheckedHeader,
      openChecked,
      format: luks.format,
      close: luks.close,
      integritySize: luks.integritySize,
      wipeIntegrityRange: luks.wipeIntegrityRange,
    },
    openVerity: verity.open,
    dmCreate: dm.create,
    fs: {
      mkfsExt4: async (dev) => {
        await run("mkfs.ext4", ["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", dev]);
      },
      makeWritable: async (dev) => {
        await run("tune2fs", ["-O", "^read-only", dev]);
      },
      check: async (dev) => {
        await run("e2fsck", ["-p", dev], { okCodes: [0, 1] });
      },
      resize: async (dev) => {
        await run("resize2fs", ["-f", dev]);
      },
    },
  };
}

export function realBootOps(lvmCtx: lvm.LvmContext): BootOps {
  return {
    disk: realBootDisk(lvmCtx),
    createProvider,
    loadModules,
    // Loaded only on boots that need it (a key fetch or a disk delta), as before.
    syncClock: async (ntpServers) => {
      const { realClockDeps, syncClock } = await import("../clock/sync.ts");
      await syncClock(ntpServers, await realClockDeps());
    },
  };
}

/** What after-sysroot runs to put the overlay together (directories it makes itself). */
export interface MountOps {
  /** mount(8) with these arguments. */
  mount(args: string[]): Promise<void>;
  /** Copy the tree under FROM into TO, keeping owners, modes and links (cp -a FROM/. TO). */
  copyTree(from: string, to: string): Promise<void>;
}

export const realMountOps: MountOps = {
  mount: async (args) => {
    await run("mount", args);
  },
  copyTree: async (from, to) => {
    await run("cp", ["-a", `${from}/.`, to]);
  },
};
