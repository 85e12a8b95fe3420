/**
 * A fake BootOps for the before-sysroot steps: an in-memory disk whose state the test sets
 * (is there a delta LV, its LUKS2 subsystem, sizes, what the COW holds) and that records every
 * operation in order. Keys handed to luks operations are recorded as the bytes they had at the
 * call (to check which key opened what) and as the array itself (to check it was zeroed after).
 */
import type { BootDisk, BootOps } from "../../src/boot/disk-ops.ts";
import type { PartitionOf } from "../../src/disk/blockdev.ts";
import type { IntegritySize } from "../../src/disk/luks.ts";
import type { CheckedHeader } from "../../src/disk/luks2-header.ts";
import type { KeyProvider, ProviderContext } from "../../src/providers/index.ts";

export interface Call {
  op: string;
  /** The arguments except a key. */
  args: unknown[];
  /** Hex of the key passed, as it was at the call. */
  keyHex?: string;
}

export interface FakeState {
  vgAppears: boolean;
  pvs: string[];
  partitions: Record<string, PartitionOf | undefined>;
  deltaLvExists: boolean;
  /** extendLvAllFree's answer: did the LV grow. */
  lvGrows: boolean;
  /** Sizes in 512-byte sectors; unknown devices are 2048. */
  sectors: Record<string, number>;
  /** LUKS2 subsystem label per device; absent = no LUKS2 header. */
  subsystem: Record<string, string | undefined>;
  cowSignature: string | undefined;
  integrity: IntegritySize;
  /** What readHead returns (the delta's first bytes). */
  head: Uint8Array;
  /** Make operation OP (e.g. "luks.readCheckedHeader") throw ERR; `when` narrows it by the arguments. */
  failures: { op: string; err: Error; when?: (args: unknown[]) => boolean }[];
}

export interface FakeKeys {
  /** Per volume ("rootfs", "delta"): what its provider returns. */
  key: Record<string, Uint8Array>;
  temporary: Record<string, boolean>;
  keySlot: Record<string, number | undefined>;
}

export interface Fake {
  ops: BootOps;
  state: FakeState;
  calls: Call[];
  /** Every key array a provider returned, to check each was zeroed. */
  handedOut: Uint8Array[];
  names: () => string[];
  /** Index of the first call whose op and first argument match, -1 when none. */
  indexOf: (op: string, first?: unknown) => number;
  find: (op: string, first?: unknown) => Call[];
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

export function fakeBootOps(over: Partial<FakeState> = {}, keysOver: Partial<FakeKeys> = {}): Fake {
  const state: FakeState = {
    vgAppears: true,
    pvs: ["/dev/vda3"],
    partitions: {},
    deltaLvExists: true,
    lvGrows: false,
    sectors: {},
    subsystem: {},
    cowSignature: undefined,
    integrity: { mappedSectors: 1000, providedSectors: 1000 },
    head: new Uint8Array(2048),
    failures: [],
    ...over,
  };
  const keys: FakeKeys = {
    key: { rootfs: new Uint8Array(32).fill(0x52), delta: new Uint8Array(32).fill(0x44) },
    temporary: {},
    keySlot: {},
    ...keysOver,
  };
  const calls: Call[] = [];
  const handedOut: Uint8Array[] = [];

  function rec(op: string, args: unknown[], key?: Uint8Array): void {
    calls.push({ op, args, keyHex: key ? hex(key) : undefined });
    const f = state.failures.find((x) => x.op === op && (!x.when || x.when(args)));
    if (f) throw f.err;
  }

  const disk: BootDisk = {
    lvm: {
      waitForVg: async (vg, opts) => {
        rec("lvm.waitForVg", [vg, opts.timeoutMs]);
        if (!state.vgAppears) throw new Error(`no disk with the LVM volume group "${vg}" appeared`);
        return 0;
      },
      activateVg: async (vg) => rec("lvm.activateVg", [vg]),
      pvsOfVg: async (vg) => {
        rec("lvm.pvsOfVg", [vg]);
        return state.pvs;
      },
      pvResize: async (pv) => rec("lvm.pvResize", [pv]),
      lvExists: async (vg, lv) => {
        rec("lvm.lvExists", [vg, lv]);
        return state.deltaLvExists;
      },
      createLvAllFree: async (vg, lv) => rec("lvm.createLvAllFree", [vg, lv]),
      extendLvAllFree: async (vg, lv) => {
        rec("lvm.extendLvAllFree", [vg, lv]);
        return state.lvGrows;
      },
    },
    block: {
      partitionOf: async (dev) => {
        rec("block.partitionOf", [dev]);
        return state.partitions[dev];
      },
      growPartition: async (part) => rec("block.growPartition", [part.disk, part.number]),
      sizeSectors: async (dev) => {
        rec("block.sizeSectors", [dev]);
        return state.sectors[dev] ?? 2048;
      },
      zeroHead: async (dev, bytes) => rec("block.zeroHead", [dev, bytes]),
      readHead: async (dev, bytes) => {
        rec("block.readHead", [dev, bytes]);
        return state.head.subarray(0, bytes);
      },
      cowSignature: async (dev) => {
        rec("block.cowSignature", [dev]);
        return state.cowSignature;
      },
      createZram: async () => {
        rec("block.createZram", []);
        return "/dev/zram0";
      },
    },
    luks: {
      readSubsystem: async (dev) => {
        rec("luks.readSubsystem", [dev]);
        return state.subsystem[dev];
      },
      setSubsystem: async (dev, sub) => {
        rec("luks.setSubsystem", [dev, sub]);
        state.subsystem[dev] = sub;
      },
      readCheckedHeader: async (dev, profile) => {
        rec("luks.readCheckedHeader", [dev, profile]);
        return { device: dev } as unknown as CheckedHeader;
      },
      openChecked: async (dev, name, key, opts) => rec("luks.openChecked", [dev, name, opts], key),
      format: async (dev, key, opts) => {
        rec("luks.format", [dev, opts], key);
        state.subsystem[dev] = opts.subsystem;
      },
      close: async (name) => rec("luks.close", [name]),
      integritySize: async (name) => {
        rec("luks.integritySize", [name]);
        return state.integrity;
      },
      wipeIntegrityRange: async (dev, start, end) => rec("luks.wipeIntegrityRange", [dev, start, end]),
    },
    openVerity: async (data, name, hash, rootHash) => rec("openVerity", [data, name, hash, rootHash]),
    dmCreate: async (name, table) => rec("dmCreate", [name, table]),
    fs: {
      mkfsExt4: async (dev) => rec("fs.mkfsExt4", [dev]),
      makeWritable: async (dev) => rec("fs.makeWritable", [dev]),
      check: async (dev) => rec("fs.check", [dev]),
      resize: async (dev) => rec("fs.resize", [dev]),
    },
  };

  const ops: BootOps = {
    disk,
    createProvider: async (config, pctx: ProviderContext): Promise<KeyProvider> => {
      rec("createProvider", [config.type, pctx.volume, pctx.device, pctx.freshKey]);
      const volume = pctx.volume;
      const provider: KeyProvider = {
        name: config.type,
        describe: () => `${config.type} fake for ${volume}`,
        temporary: keys.temporary[volume] ?? false,
        getKey: async () => {
          rec("getKey", [volume]);
          const k = new Uint8Array(keys.key[volume] ?? new Uint8Array(32).fill(0x11));
          handedOut.push(k);
          return k;
        },
        keySlot: () => keys.keySlot[volume],
        afterFormat: async (device) => rec("afterFormat", [volume, device]),
      };
      return provider;
    },
    loadModules: async (o) => rec("loadModules", [o.tee]),
    syncClock: async (ntp) => rec("syncClock", [ntp]),
  };

  const matches = (c: Call, op: string, first: unknown) =>
    c.op === op && (first === undefined || c.args[0] === first);
  return {
    ops,
    state,
    calls,
    handedOut,
    names: () => calls.map((c) => c.op),
    indexOf: (op, first) => calls.findIndex((c) => matches(c, op, first)),
    find: (op, first) => calls.filter((c) => matches(c, op, first)),
  };
}
