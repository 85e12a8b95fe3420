/**
 * The before-sysroot stage's decisions and error paths, run against a fake disk (fake-boot-ops.ts)
 * in milliseconds: which volume is (re)formatted or opened with which key and keyslot, how the
 * delta and its filesystem grow, what happens to the COW, and that a failure stops the stage
 * before anything is formatted. The VM scenarios remain the check against real devices.
 */
import { afterAll, afterEach, beforeEach, describe, expect, type Mock, spyOn, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BeforeCtx, beforeSysrootSteps } from "../../src/boot/before-sysroot.ts";
import type { FdeConfig } from "../../src/config/index.ts";
import type { PartitionOf } from "../../src/disk/blockdev.ts";
import { SUBSYSTEM_INITIALIZING, SUBSYSTEM_READY } from "../../src/disk/luks.ts";
import * as N from "../../src/disk/names.ts";
import { FdeError, KeyProviderError } from "../../src/errors.ts";
import { runSteps, StepsFailed } from "../../src/steps.ts";
import { type Fake, type FakeKeys, type FakeState, fakeBootOps } from "./fake-boot-ops.ts";

const ROOT_HASH = "ab".repeat(32);
const configDir = mkdtempSync(join(tmpdir(), "before-sysroot-"));
writeFileSync(join(configDir, "metadata.toml"), `type = 1\nroot_hash = "${ROOT_HASH}"\n`);
afterAll(() => rmSync(configDir, { recursive: true, force: true }));

let logSpy: Mock<typeof console.error>;
beforeEach(() => {
  logSpy = spyOn(console, "error").mockImplementation(() => {});
});
afterEach(() => logSpy.mockRestore());
const logged = () => logSpy.mock.calls.map((c) => String(c[1] ?? c[0])).join("\n");

type Location = FdeConfig["rootfs"]["deltaLocation"];
type Backend = FdeConfig["rootfs"]["deltaBackend"];

function cfg(o: {
  location: Location;
  backend: Backend;
  rootfs?: "exec" | "kbs";
  delta?: "exec" | "otp" | "tpm2" | "kbs";
  integrity?: boolean;
}): FdeConfig {
  const provider = (type: string) => ({ type }) as unknown as NonNullable<FdeConfig["rootfs"]["encrypt"]>;
  return {
    rootfs: {
      deltaLocation: o.location,
      deltaBackend: o.backend,
      encrypt: o.rootfs ? provider(o.rootfs) : undefined,
    } as FdeConfig["rootfs"],
    delta: {
      integrity: o.integrity ?? false,
      encrypt: provider(o.delta ?? "exec") as FdeConfig["delta"]["encrypt"],
    },
  } as FdeConfig;
}

interface Run {
  fake: Fake;
  error?: StepsFailed;
  lines: string[];
}

async function boot(
  fde: FdeConfig,
  state: Partial<FakeState> = {},
  keys: Partial<FakeKeys> = {},
  ntpServers?: string[],
): Promise<Run> {
  const fake = fakeBootOps(state, keys);
  const lines: string[] = [];
  const ctx: BeforeCtx = {
    configDir,
    fde,
    ops: fake.ops,
    verityName: fde.rootfs.deltaBackend === "overlayfs" ? N.ROOTFS : N.ROOTFS_VERITY,
    ntpServers,
  };
  try {
    await runSteps("before-sysroot", beforeSysrootSteps(fde), ctx, (l) => lines.push(l));
    return { fake, lines };
  } catch (err) {
    if (!(err instanceof StepsFailed)) throw err;
    return { fake, error: err, lines };
  }
}

const READY = { [N.LV_DELTA]: SUBSYSTEM_READY };
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const ROOTFS_KEY = new Uint8Array(32).fill(0x52);
const DELTA_KEY = new Uint8Array(32).fill(0x44);

describe("first boot vs. later boots of a persistent delta", () => {
  test("first boot: format marked initializing, tpm2 afterFormat, open, then marked ready last", async () => {
    const r = await boot(cfg({ location: "disk-persist", backend: "dm-snapshot", delta: "tpm2" }), {
      deltaLvExists: false,
    });
    expect(r.error).toBeUndefined();
    const f = r.fake;
    // A new LV gets its old signatures wiped (the 4 KiB default) before anything reads it.
    expect(f.find("block.zeroHead", N.LV_DELTA)[0]?.args).toEqual([N.LV_DELTA, undefined]);
    expect(f.indexOf("lvm.createLvAllFree")).toBeLessThan(f.indexOf("block.zeroHead", N.LV_DELTA));
    const format = f.find("luks.format", N.LV_DELTA);
    expect(format).toHaveLength(1);
    expect(format[0]!.args[1]).toMatchObject({ subsystem: SUBSYSTEM_INITIALIZING, randomKey: false });
    expect(format[0]!.keyHex).toBe(hex(DELTA_KEY));
    // No header check on a volume about to be formatted; the open after the format checks it.
    expect(f.find("luks.readCheckedHeader", N.LV_DELTA)).toHaveLength(0);
    const order = ["luks.format", "afterFormat", "luks.openChecked", "dmCreate", "luks.setSubsystem"];
    const idx = order.map((op) => f.names().indexOf(op));
    expect(idx.every((v, i) => v >= 0 && (i === 0 || v > idx[i - 1]!))).toBe(true);
    expect(f.find("afterFormat")[0]!.args).toEqual(["delta", N.LV_DELTA]);
    expect(f.find("luks.setSubsystem")[0]!.args).toEqual([N.LV_DELTA, SUBSYSTEM_READY]);
    expect(f.names().at(-1)).toBe("luks.setSubsystem");
    // A fresh COW is zeroed over its first MiB.
    expect(f.find("block.zeroHead", N.mapper(N.DELTA))[0]?.args[1]).toBe(1024 * 1024);
    expect(logged()).toContain("initialising: no LUKS2 header yet (first boot)");
  });

  test("later boot: header checked before the key is fetched, opened with its keyslot, never formatted", async () => {
    const r = await boot(
      cfg({ location: "disk-persist", backend: "dm-snapshot" }),
      { subsystem: { ...READY }, cowSignature: "DM_snapshot_cow" },
      { keySlot: { delta: 3 } },
    );
    expect(r.error).toBeUndefined();
    const f = r.fake;
    expect(f.find("luks.format")).toHaveLength(0);
    expect(f.find("luks.setSubsystem")).toHaveLength(0);
    expect(f.find("fs.mkfsExt4")).toHaveLength(0);
    expect(f.indexOf("luks.readCheckedHeader", N.LV_DELTA)).toBeLessThan(f.indexOf("getKey"));
    const open = f.find("luks.openChecked", N.LV_DELTA);
    expect(open).toHaveLength(1);
    expect(open[0]!.args[1]).toBe(N.DELTA);
    expect(open[0]!.args[2]).toMatchObject({ keySlot: 3, profile: { integrity: false } });
    expect((open[0]!.args[2] as { checked?: unknown }).checked).toBeDefined();
    expect(open[0]!.keyHex).toBe(hex(DELTA_KEY));
    // The COW from the previous boot is kept: not zeroed.
    expect(f.find("block.zeroHead", N.mapper(N.DELTA))).toHaveLength(0);
    expect(logged()).toContain("kept from the previous boot (persistent)");
  });

  test("a persistent delta the key does not open is an error, never a reason to reformat", async () => {
    const r = await boot(cfg({ location: "disk-persist", backend: "dm-snapshot" }), {
      subsystem: { ...READY },
      failures: [{ op: "luks.openChecked", err: new Error("No key available") }],
    });
    expect(r.error).toBeInstanceOf(StepsFailed);
    expect(r.error!.failure.title).toBe("unlocking the delta volume");
    expect(r.error!.message).toContain("cannot open the persistent delta volume");
    expect(r.fake.find("luks.format")).toHaveLength(0);
    expect(r.fake.find("dmCreate")).toHaveLength(0);
    expect(r.fake.handedOut.every((k) => k.every((b) => b === 0))).toBe(true);
  });
});

describe("a first boot that fails leaves the delta marked initializing (re-formatted next boot)", () => {
  test("tpm2 cannot store its sealed key: not opened, not marked ready", async () => {
    const r = await boot(cfg({ location: "disk-persist", backend: "dm-snapshot", delta: "tpm2" }), {
      failures: [{ op: "afterFormat", err: new Error("TPM2_Create: TPM_RC_LOCKOUT") }],
    });
    expect(r.error!.failure.title).toBe("unlocking the delta volume");
    expect(r.error!.failure.provider).toBe("tpm2 fake for delta");
    expect(r.fake.find("luks.openChecked")).toHaveLength(0);
    expect(r.fake.find("luks.setSubsystem")).toHaveLength(0);
    expect(r.fake.state.subsystem[N.LV_DELTA]).toBe(SUBSYSTEM_INITIALIZING);
  });

  test("the snapshot cannot be built: not marked ready; the failure names no key provider", async () => {
    const r = await boot(cfg({ location: "disk-persist", backend: "dm-snapshot" }), {
      failures: [{ op: "dmCreate", err: new Error("device-mapper: reload ioctl failed") }],
    });
    expect(r.error!.failure.title).toBe("building the writable root (dm-snapshot)");
    // The provider is named only while its step runs.
    expect(r.error!.failure.provider).toBeUndefined();
    expect(r.fake.find("luks.setSubsystem")).toHaveLength(0);
  });
});

describe("re-initialisation of the delta", () => {
  const cases: [string, Location, Partial<FakeState>, Partial<FakeKeys>, boolean][] = [
    [
      "interrupted first boot",
      "disk-persist",
      { subsystem: { [N.LV_DELTA]: SUBSYSTEM_INITIALIZING } },
      {},
      true,
    ],
    ["foreign LUKS2 header", "disk-persist", { subsystem: { [N.LV_DELTA]: "other" } }, {}, true],
    ["delta_location = disk", "disk", { subsystem: { ...READY } }, {}, true],
    [
      "a temporary (otp) key",
      "disk-persist",
      { subsystem: { ...READY } },
      { temporary: { delta: true } },
      true,
    ],
    ["initialised and persistent", "disk-persist", { subsystem: { ...READY } }, {}, false],
  ];
  for (const [name, location, state, keys, formats] of cases) {
    test(`${name}: ${formats ? "formatted" : "opened"}`, async () => {
      const r = await boot(cfg({ location, backend: "overlayfs" }), state, keys);
      expect(r.error).toBeUndefined();
      expect(r.fake.find("luks.format", N.LV_DELTA)).toHaveLength(formats ? 1 : 0);
      // The overlay's filesystem is made only on a fresh volume, and only then marked ready.
      expect(r.fake.find("fs.mkfsExt4")).toHaveLength(formats ? 1 : 0);
      expect(r.fake.find("luks.setSubsystem")).toHaveLength(formats ? 1 : 0);
    });
  }

  test("a per-boot random key skips the slow PBKDF; integrity is not wiped only under dm-snapshot", async () => {
    const otp = await boot(
      cfg({ location: "disk", backend: "dm-snapshot", integrity: true }),
      {},
      {
        temporary: { delta: true },
      },
    );
    expect(otp.fake.find("luks.format")[0]!.args[1]).toMatchObject({
      randomKey: true,
      integrity: true,
      integrityNoWipe: true,
    });
    const overlay = await boot(cfg({ location: "disk", backend: "overlayfs", integrity: true }));
    expect(overlay.fake.find("luks.format")[0]!.args[1]).toMatchObject({
      randomKey: false,
      integrity: true,
      integrityNoWipe: false,
    });
  });
});

describe("keys: which volume gets which, and none outlives its use", () => {
  test("rootfs with its own key and keyslot, verity over the decrypted rootfs, delta with its key", async () => {
    const r = await boot(
      cfg({ location: "disk-persist", backend: "dm-snapshot", rootfs: "exec" }),
      { subsystem: { ...READY } },
      { keySlot: { rootfs: 1, delta: 0 } },
      ["ntp.example"],
    );
    expect(r.error).toBeUndefined();
    const f = r.fake;
    const rootfs = f.find("luks.openChecked", N.LV_ROOTFS);
    expect(rootfs).toHaveLength(1);
    expect(rootfs[0]!.args[1]).toBe(N.ROOTFS_DECRYPTED);
    expect(rootfs[0]!.args[2]).toMatchObject({ keySlot: 1, profile: { integrity: false } });
    expect(rootfs[0]!.keyHex).toBe(hex(ROOTFS_KEY));
    expect(f.find("luks.openChecked", N.LV_DELTA)[0]!.keyHex).toBe(hex(DELTA_KEY));
    expect(f.find("openVerity")[0]!.args).toEqual([
      N.mapper(N.ROOTFS_DECRYPTED),
      N.ROOTFS_VERITY,
      N.LV_ROOTFS_HASH,
      ROOT_HASH,
    ]);
    expect(f.find("createProvider").map((c) => c.args)).toEqual([
      // Only the delta may be formatted with a fresh key (tpm2 then seals it in afterFormat).
      ["exec", "rootfs", N.LV_ROOTFS, "never"],
      ["exec", "delta", N.LV_DELTA, "allowed"],
    ]);
    // The clock is checked before the first key fetch, with global.toml's servers.
    expect(f.find("syncClock")[0]!.args).toEqual([["ntp.example"]]);
    expect(f.indexOf("syncClock")).toBeLessThan(f.indexOf("getKey"));
    expect(f.indexOf("luks.readCheckedHeader", N.LV_ROOTFS)).toBeLessThan(f.indexOf("getKey", "rootfs"));
    expect(f.handedOut).toHaveLength(2);
    for (const k of f.handedOut) expect(k.every((b) => b === 0)).toBe(true);
  });

  test("an unencrypted rootfs: verity over the LV, no rootfs key, no clock step for a ram delta", async () => {
    const r = await boot(cfg({ location: "ram", backend: "dm-snapshot" }));
    expect(r.error).toBeUndefined();
    expect(r.fake.find("openVerity")[0]!.args[0]).toBe(N.LV_ROOTFS);
    expect(r.fake.find("getKey")).toHaveLength(0);
    expect(r.fake.find("syncClock")).toHaveLength(0);
  });

  test("the key is zeroed when the open fails too", async () => {
    const r = await boot(cfg({ location: "disk", backend: "dm-snapshot", rootfs: "exec" }), {
      failures: [{ op: "luks.openChecked", err: new Error("wrong key"), when: (a) => a[0] === N.LV_ROOTFS }],
    });
    expect(r.error!.failure.title).toBe("unlocking the encrypted rootfs");
    expect(r.fake.handedOut).toHaveLength(1);
    expect(r.fake.handedOut[0]!.every((b) => b === 0)).toBe(true);
  });

  test("no key bytes in any argument other than the key itself (argv, names, options)", async () => {
    const r = await boot(
      cfg({ location: "disk-persist", backend: "overlayfs", rootfs: "exec", integrity: true }),
      { deltaLvExists: false },
      { key: { rootfs: new TextEncoder().encode("rootfs-secret-passphrase"), delta: DELTA_KEY } },
    );
    expect(r.error).toBeUndefined();
    const args = JSON.stringify(r.fake.calls.map((c) => c.args));
    for (const secret of [
      "rootfs-secret-passphrase",
      hex(DELTA_KEY),
      "DDDDDDDD",
      Buffer.from(DELTA_KEY).toString("base64"),
    ]) {
      expect(args).not.toContain(secret);
    }
    expect(r.fake.calls.filter((c) => c.keyHex).map((c) => c.op)).toEqual([
      "luks.openChecked",
      "luks.format",
      "luks.openChecked",
    ]);
  });

  test("a temporary provider cannot unlock the rootfs: refused before any key is fetched", async () => {
    const r = await boot(
      cfg({ location: "disk", backend: "dm-snapshot", rootfs: "exec" }),
      {},
      {
        temporary: { rootfs: true },
      },
    );
    expect(r.error!.failure.error).toBeInstanceOf(KeyProviderError);
    expect(r.fake.find("getKey")).toHaveLength(0);
    expect(r.fake.find("luks.openChecked")).toHaveLength(0);
  });

  test("an empty key is refused, not passed to cryptsetup", async () => {
    const r = await boot(
      cfg({ location: "disk", backend: "dm-snapshot", rootfs: "exec" }),
      {},
      {
        key: { rootfs: new Uint8Array(0) },
      },
    );
    expect(r.error!.message).toContain("returned an empty key");
    expect(r.fake.find("luks.openChecked")).toHaveLength(0);
  });

  test("TEE modules only when a kbs provider attests", async () => {
    const kbs = await boot(cfg({ location: "disk", backend: "dm-snapshot", delta: "kbs" }));
    expect(kbs.fake.find("loadModules")[0]!.args).toEqual([true]);
    const exec = await boot(cfg({ location: "disk", backend: "dm-snapshot", rootfs: "exec" }));
    expect(exec.fake.find("loadModules")[0]!.args).toEqual([false]);
  });
});

describe("a failure stops the stage; a bad header means nothing is formatted", () => {
  test("rootfs header refused: no key fetched, nothing opened or formatted, later steps not run", async () => {
    const r = await boot(cfg({ location: "disk", backend: "dm-snapshot", rootfs: "exec" }), {
      failures: [
        {
          op: "luks.readCheckedHeader",
          err: new FdeError("keyslot 0 uses cipher_null"),
          when: (a) => a[0] === N.LV_ROOTFS,
        },
      ],
    });
    expect(r.error!.failure.index).toBe(4);
    expect(r.error!.message).toContain("cipher_null");
    for (const op of [
      "getKey",
      "luks.openChecked",
      "luks.format",
      "openVerity",
      "lvm.lvExists",
      "dmCreate",
    ]) {
      expect(r.fake.find(op)).toHaveLength(0);
    }
    expect(r.lines.at(-1)).toContain("FAILED");
  });

  test("persistent delta header refused: no key fetched, never formatted", async () => {
    const r = await boot(cfg({ location: "disk-persist", backend: "dm-snapshot" }), {
      subsystem: { ...READY },
      failures: [{ op: "luks.readCheckedHeader", err: new FdeError("digest covers no keyslot") }],
    });
    expect(r.error!.failure.title).toBe("unlocking the delta volume");
    for (const op of ["getKey", "luks.openChecked", "luks.format", "dmCreate", "luks.setSubsystem"]) {
      expect(r.fake.find(op)).toHaveLength(0);
    }
  });

  test("a failed verity open stops before the delta is grown or touched", async () => {
    const r = await boot(cfg({ location: "disk", backend: "dm-snapshot" }), {
      failures: [{ op: "openVerity", err: new Error("verity: root hash mismatch") }],
    });
    expect(r.error!.failure.title).toBe("opening dm-verity");
    for (const op of ["lvm.pvsOfVg", "lvm.lvExists", "createProvider", "luks.format", "dmCreate"]) {
      expect(r.fake.find(op)).toHaveLength(0);
    }
  });

  test("no volume group: the stage stops at its first step", async () => {
    const r = await boot(cfg({ location: "disk", backend: "dm-snapshot" }), { vgAppears: false });
    expect(r.error!.failure.index).toBe(1);
    expect(r.fake.find("lvm.activateVg")).toHaveLength(0);
  });
});

describe("growing the disk and the delta", () => {
  // 2 MiB after the partition: room to grow. A full disk's partition is not grown.
  const part: PartitionOf = {
    disk: "/dev/vda",
    number: 3,
    startSectors: 2048,
    sizeSectors: 100_000,
    diskSectors: 106_144,
  };
  const full: PartitionOf = { ...part, disk: "/dev/vdb", number: 1, diskSectors: 102_048 };

  test("a growable PV partition is grown, every PV resized; an existing delta LV is extended, not wiped", async () => {
    const r = await boot(cfg({ location: "disk", backend: "dm-snapshot" }), {
      pvs: ["/dev/vda3", "/dev/vdb1", "/dev/vdc"],
      partitions: { "/dev/vda3": part, "/dev/vdb1": full },
      lvGrows: true,
    });
    expect(r.error).toBeUndefined();
    expect(r.fake.find("block.growPartition").map((c) => c.args)).toEqual([["/dev/vda", 3]]);
    expect(r.fake.find("lvm.pvResize").map((c) => c.args[0])).toEqual(["/dev/vda3", "/dev/vdb1", "/dev/vdc"]);
    expect(r.fake.find("lvm.extendLvAllFree")).toHaveLength(1);
    expect(r.fake.find("lvm.createLvAllFree")).toHaveLength(0);
    expect(r.fake.find("block.zeroHead", N.LV_DELTA)).toHaveLength(0);
  });

  test("growing is best effort: a failed partition grow warns and the boot goes on", async () => {
    const r = await boot(cfg({ location: "disk", backend: "dm-snapshot" }), {
      failures: [{ op: "lvm.pvsOfVg", err: new Error("pvs: no such VG") }],
    });
    expect(r.error).toBeUndefined();
    expect(logged()).toContain("could not grow the PV partition: pvs: no such VG");
    expect(r.fake.find("lvm.lvExists")).toHaveLength(1);
  });

  test("integrity delta grown by the kernel: closed and opened again with the same key and keyslot", async () => {
    const r = await boot(
      cfg({ location: "disk-persist", backend: "dm-snapshot", integrity: true }),
      {
        subsystem: { ...READY },
        cowSignature: "DM_snapshot_cow",
        integrity: { mappedSectors: 1000, providedSectors: 3000 },
        sectors: { [N.mapper(N.DELTA)]: 3000 },
      },
      { keySlot: { delta: 2 } },
    );
    expect(r.error).toBeUndefined();
    const f = r.fake;
    const opens = f.find("luks.openChecked", N.LV_DELTA);
    expect(opens).toHaveLength(2);
    expect(f.indexOf("luks.close", N.DELTA)).toBeGreaterThan(f.calls.indexOf(opens[0]!));
    expect(f.indexOf("luks.close", N.DELTA)).toBeLessThan(f.calls.indexOf(opens[1]!));
    expect(opens[1]!.args[2]).toMatchObject({ keySlot: 2, profile: { integrity: true } });
    expect(opens[1]!.keyHex).toBe(hex(DELTA_KEY));
    expect(logged()).toContain("grew the delta volume (dm-integrity)");
  });

  test("integrity delta with nothing to gain is not closed", async () => {
    const r = await boot(cfg({ location: "disk-persist", backend: "dm-snapshot", integrity: true }), {
      subsystem: { ...READY },
      integrity: { mappedSectors: 3000, providedSectors: 3000 },
    });
    expect(r.error).toBeUndefined();
    expect(r.fake.find("luks.close")).toHaveLength(0);
    expect(r.fake.find("luks.openChecked", N.LV_DELTA)).toHaveLength(1);
  });

  test("integrity delta that fails to open again after the close: a clear error", async () => {
    let opens = 0;
    const r = await boot(cfg({ location: "disk-persist", backend: "dm-snapshot", integrity: true }), {
      subsystem: { ...READY },
      integrity: { mappedSectors: 1000, providedSectors: 3000 },
      failures: [{ op: "luks.openChecked", err: new Error("device busy"), when: () => ++opens === 2 }],
    });
    expect(r.error!.message).toContain("cannot open the delta volume");
    expect(r.error!.message).toContain("again after closing it to grow it");
    expect(r.fake.find("dmCreate")).toHaveLength(0);
  });
});

/** A head of a device holding an ext4 superblock of BLOCKS blocks of 4 KiB. */
function ext4Head(blocks: number): Uint8Array {
  const head = new Uint8Array(2048);
  const v = new DataView(head.buffer, 1024);
  v.setUint32(0x04, blocks, true);
  v.setUint32(0x18, 2, true); // 1024 << 2 = 4 KiB
  v.setUint16(0x38, 0xef53, true);
  return head;
}

describe("the overlay filesystem on a persistent integrity delta", () => {
  const dev = N.mapper(N.DELTA);
  const fde = cfg({ location: "disk-persist", backend: "overlayfs", integrity: true });

  test("tags written over exactly the device beyond the filesystem, then the filesystem grows", async () => {
    const r = await boot(fde, { subsystem: { ...READY }, head: ext4Head(100), sectors: { [dev]: 1600 } });
    expect(r.error).toBeUndefined();
    expect(r.fake.find("luks.wipeIntegrityRange")[0]!.args).toEqual([dev, 100 * 4096, 1600 * 512]);
    expect(r.fake.indexOf("luks.wipeIntegrityRange")).toBeLessThan(r.fake.indexOf("fs.resize"));
    expect(r.fake.find("fs.resize", dev)).toHaveLength(1);
    expect(r.fake.find("fs.mkfsExt4")).toHaveLength(0);
  });

  test("no ext4 superblock: nothing wiped, the filesystem keeps its size this boot", async () => {
    const r = await boot(fde, { subsystem: { ...READY }, sectors: { [dev]: 1600 } });
    expect(r.error).toBeUndefined();
    expect(r.fake.find("luks.wipeIntegrityRange")).toHaveLength(0);
    expect(r.fake.find("fs.resize")).toHaveLength(0);
    expect(r.fake.find("fs.check", dev)).toHaveLength(1);
    expect(logged()).toContain("no ext4 superblock on /dev/mapper/delta");
  });

  test("a failed wipe: the filesystem keeps its size", async () => {
    const r = await boot(fde, {
      subsystem: { ...READY },
      head: ext4Head(100),
      sectors: { [dev]: 1600 },
      failures: [{ op: "luks.wipeIntegrityRange", err: new Error("I/O error") }],
    });
    expect(r.error).toBeUndefined();
    expect(r.fake.find("fs.resize")).toHaveLength(0);
  });

  test("a filesystem that fills its device: nothing to wipe, resized (a no-op) as before", async () => {
    const r = await boot(fde, { subsystem: { ...READY }, head: ext4Head(200), sectors: { [dev]: 1600 } });
    expect(r.fake.find("luks.wipeIntegrityRange")).toHaveLength(0);
    expect(r.fake.find("fs.resize", dev)).toHaveLength(1);
  });

  test("without integrity the head is not read and the filesystem grows", async () => {
    const r = await boot(cfg({ location: "disk-persist", backend: "overlayfs" }), {
      subsystem: { ...READY },
    });
    expect(r.fake.find("block.readHead")).toHaveLength(0);
    expect(r.fake.find("fs.resize", dev)).toHaveLength(1);
  });
});

describe("the snapshot's COW", () => {
  test("an unknown signature on a persistent COW is refused, not overwritten", async () => {
    const r = await boot(cfg({ location: "disk-persist", backend: "dm-snapshot" }), {
      subsystem: { ...READY },
      cowSignature: "ext4",
    });
    expect(r.error!.failure.title).toBe("building the writable root (dm-snapshot)");
    expect(r.error!.message).toContain("refusing to overwrite");
    expect(r.fake.find("block.zeroHead", N.mapper(N.DELTA))).toHaveLength(0);
    expect(r.fake.find("dmCreate", N.ROOTFS)).toHaveLength(0);
  });

  test("no signature on a persistent COW: zeroed", async () => {
    const r = await boot(cfg({ location: "disk-persist", backend: "dm-snapshot" }), {
      subsystem: { ...READY },
    });
    expect(r.fake.find("block.zeroHead", N.mapper(N.DELTA))).toHaveLength(1);
  });

  test("delta_location = disk: the COW is zeroed even when it holds last boot's COW; not persistent", async () => {
    const r = await boot(cfg({ location: "disk", backend: "dm-snapshot" }), {
      subsystem: { ...READY },
      cowSignature: "DM_snapshot_cow",
    });
    expect(r.fake.find("block.cowSignature")).toHaveLength(0);
    expect(r.fake.find("block.zeroHead", N.mapper(N.DELTA))).toHaveLength(1);
    expect(String(r.fake.find("dmCreate", N.ROOTFS)[0]!.args[1])).toMatch(/ N 16$/);
  });

  test("ram: a zram COW sized by the disk layer, zeroed, with the verity+zero table under it", async () => {
    const r = await boot(cfg({ location: "ram", backend: "dm-snapshot" }), {
      sectors: { [N.mapper(N.ROOTFS_VERITY)]: 4096, "/dev/zram0": 8192 },
    });
    expect(r.error).toBeUndefined();
    expect(r.fake.find("block.zeroHead", "/dev/zram0")).toHaveLength(1);
    expect(r.fake.find("dmCreate").map((c) => c.args)).toEqual([
      [N.ROOTFS_EXTENDED, `0 4096 linear ${N.mapper(N.ROOTFS_VERITY)} 0\n4096 8192 zero`],
      [N.ROOTFS, `0 12288 snapshot ${N.mapper(N.ROOTFS_EXTENDED)} /dev/zram0 N 16`],
    ]);
    // The root is made writable, checked and grown to the snapshot's size.
    expect(r.fake.find("fs.resize", N.ROOT_DEVICE)).toHaveLength(1);
    expect(r.fake.find("luks.setSubsystem")).toHaveLength(0);
  });
});
