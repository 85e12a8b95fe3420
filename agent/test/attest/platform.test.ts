/**
 * Platform detection without downgrade (attest/platform.ts, attest/index.ts): fake /proc, /sys and
 * /dev trees under a temp sysRoot, configfs-tsm emulated by fake-tsm.ts.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { detectTee, selectAttester } from "../../src/attest/index.ts";
import {
  attestInterface,
  CPUINFO_READ_MAX,
  cpuFlags,
  detectPlatform,
  TEE_DRIVERS,
} from "../../src/attest/platform.ts";
import { isConfigfs } from "../../src/attest/tsm.ts";
import { FdeError, formatError } from "../../src/errors.ts";
import { fakeTsm } from "./fake-tsm.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A real guest's cpuinfo block, shortened; `extra` flags are appended to the flags line. */
const cpuinfo = (extra: string[]) =>
  `processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu vme de pse tsc msr pae hypervisor ${extra.join(" ")}\nbugs\t\t: spectre_v1\n\n`;

interface Guest {
  /** Extra CPU flags (tdx_guest, sev_snp). */
  flags?: string[];
  /** Files and directories to create, relative to the sysRoot ("dir/" for a directory). */
  files?: string[];
}

/** A sysRoot with /proc/cpuinfo and the given nodes; no configfs-tsm unless a test adds one. */
function guest(g: Guest = {}): string {
  const root = mkdtempSync(join(tmpdir(), "guest-"));
  dirs.push(root);
  mkdirSync(join(root, "proc"));
  writeFileSync(join(root, "proc/cpuinfo"), cpuinfo(g.flags ?? []));
  for (const f of g.files ?? []) {
    if (f.endsWith("/")) mkdirSync(join(root, f), { recursive: true });
    else {
      mkdirSync(dirname(join(root, f)), { recursive: true });
      writeFileSync(join(root, f), "");
    }
  }
  return root;
}

/** Where no configfs-tsm is: a tsm root inside a temp dir that does not exist. */
const noTsm = () => join(guest(), "sys/kernel/config/tsm");
const VTPM = "dev/tpmrm0";

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(FdeError);
    return formatError(e);
  }
  throw new Error("expected a refusal");
}

describe("TDX or SNP guest without its attestation interface: an error, never TPM evidence", () => {
  test("TDX CPU flag, no configfs-tsm, no /dev/tdx_guest: names TDX, both interfaces and the modules", async () => {
    const sys = guest({ flags: ["tdx_guest"] });
    const tsmRoot = noTsm();
    const text = await refusal(selectAttester({ paths: { tsmRoot, sysRoot: sys }, env: {} }));
    expect(text).toContain("Intel TDX guest (CPU flag tdx_guest in /proc/cpuinfo)");
    expect(text).toContain(`configfs is not mounted at ${dirname(tsmRoot)}`);
    expect(text).toContain("no /dev/tdx_guest");
    expect(text).toContain("TPM or sample evidence is not sent");
    expect(text).toMatch(/Hint: the kernel module tdx_guest .*tsm or tsm_report.*configfs/);
  });
  test("TDX CPU flag with a vTPM: still the TDX error, not TPM evidence", async () => {
    const sys = guest({ flags: ["tdx_guest"], files: [VTPM] });
    const paths = { tsmRoot: noTsm(), sysRoot: sys };
    expect(await detectTee(paths)).toBe("tdx");
    expect(await refusal(selectAttester({ paths, env: {} }))).toContain("Intel TDX guest");
  });
  test("SNP platform device with a vTPM and no sev-guest driver: the SNP error, not TPM evidence", async () => {
    const sys = guest({ files: ["sys/devices/platform/sev-guest/", VTPM] });
    const text = await refusal(selectAttester({ paths: { tsmRoot: noTsm(), sysRoot: sys }, env: {} }));
    expect(text).toContain("AMD SEV-SNP guest (the kernel's /sys/devices/platform/sev-guest)");
    expect(text).toContain("no /dev/sev-guest");
    expect(text).toContain("Hint: the kernel module sev_guest");
  });
  test("SNP told by /sys/devices/system/cpu/sev alone (Linux 6.11+) with a vTPM: the SNP error", async () => {
    const sys = guest({ files: ["sys/devices/system/cpu/sev/", VTPM] });
    const text = await refusal(selectAttester({ paths: { tsmRoot: noTsm(), sysRoot: sys }, env: {} }));
    expect(text).toContain("AMD SEV-SNP guest (/sys/devices/system/cpu/sev)");
  });
  test("signs of both TEEs (TDX flag, configfs-tsm provider sev_guest): refused, no guess", async () => {
    const tsm = await fakeTsm("sev_guest", (inblob) => ({ outblob: inblob }));
    const sys = guest({ flags: ["tdx_guest"] });
    const text = await refusal(
      selectAttester({ paths: { tsmRoot: tsm.root, sysRoot: sys }, fs: tsm.fs, env: {} }),
    );
    expect(text).toContain("conflicting TEE signs: Intel TDX (CPU flag tdx_guest");
    expect(text).toContain("AMD SEV-SNP (configfs-tsm provider sev_guest)");
  });
  test("the sev_snp CPU flag alone (an SNP-capable host, not a guest) is not an SNP sign", async () => {
    const sys = guest({ flags: ["sev", "sev_es", "sev_snp"], files: [VTPM] });
    expect((await detectPlatform({ tsmRoot: noTsm(), sysRoot: sys })).platform).toBe("none");
    expect((await selectAttester({ paths: { tsmRoot: noTsm(), sysRoot: sys }, env: {} })).tee).toBe("tpm");
  });
});

describe("TEE guests with an interface, TPM-only machines, tee forced", () => {
  test("TDX flag and configfs-tsm provider tdx_guest: TDX evidence via configfs-tsm", async () => {
    const tsm = await fakeTsm("tdx_guest", (inblob) => ({ outblob: inblob }));
    const sys = guest({ flags: ["tdx_guest"], files: [VTPM] });
    const info = await detectPlatform({ tsmRoot: tsm.root, sysRoot: sys }, tsm.fs);
    expect(info.platform).toBe("tdx");
    expect(info.signs).toEqual(["CPU flag tdx_guest in /proc/cpuinfo", "configfs-tsm provider tdx_guest"]);
    expect(attestInterface("tdx", info.interfaces)).toBe("configfs-tsm");
    const attester = await selectAttester({
      paths: { tsmRoot: tsm.root, sysRoot: sys },
      fs: tsm.fs,
      env: {},
    });
    expect(attester.tee).toBe("tdx");
    expect(await tsm.entries()).toEqual([]);
  });
  test("SNP with /dev/sev-guest only (kernels before configfs-tsm): the device is the interface", async () => {
    const sys = guest({ files: ["sys/devices/platform/sev-guest/", "dev/sev-guest"] });
    const info = await detectPlatform({ tsmRoot: noTsm(), sysRoot: sys });
    expect(info.platform).toBe("snp");
    expect(info.interfaces).toMatchObject({ sevGuest: true, tdxGuest: false, tsmProvider: undefined });
    expect(attestInterface("snp", info.interfaces)).toBe("device");
    expect((await selectAttester({ paths: { tsmRoot: noTsm(), sysRoot: sys }, env: {} })).tee).toBe("snp");
  });
  test("no TEE sign and a vTPM: TPM evidence", async () => {
    const sys = guest({ files: [VTPM] });
    const paths = { tsmRoot: noTsm(), sysRoot: sys };
    expect(await detectTee(paths)).toBe("tpm");
    expect((await selectAttester({ paths, env: {} })).tee).toBe("tpm");
  });
  test('tee = "tpm" still forces TPM evidence on a TDX or SNP guest', async () => {
    const tdx = guest({ flags: ["tdx_guest"], files: [VTPM] });
    expect(
      (await selectAttester({ paths: { tsmRoot: noTsm(), sysRoot: tdx }, env: {}, tee: "tpm" })).tee,
    ).toBe("tpm");
    const snp = guest({ files: ["sys/devices/platform/sev-guest/", VTPM] });
    const forced = { paths: { tsmRoot: noTsm(), sysRoot: snp }, env: { CRYPTPILOT_TEE: "tpm" } };
    expect((await selectAttester(forced)).tee).toBe("tpm");
  });
  test("no sign, no TPM: no TEE found, naming what was looked for", async () => {
    const text = await refusal(selectAttester({ paths: { tsmRoot: noTsm(), sysRoot: guest() }, env: {} }));
    expect(text).toContain("no TEE found: no TDX or SEV-SNP sign (CPU flag tdx_guest");
  });
});

describe("reading the signs", () => {
  test("cpuinfo: the first CPU's flags; nothing past the read bound; a missing file is no flags", async () => {
    const sys = guest();
    const block = cpuinfo(["tdx_guest"]);
    writeFileSync(join(sys, "proc/cpuinfo"), block.repeat(Math.ceil((4 * CPUINFO_READ_MAX) / block.length)));
    expect((await cpuFlags(sys)).has("tdx_guest")).toBe(true);
    // A flags line only past the bound is not seen: the file is not read to its end.
    writeFileSync(join(sys, "proc/cpuinfo"), `${"x".repeat(CPUINFO_READ_MAX)}\n${block}`);
    expect((await cpuFlags(sys)).has("tdx_guest")).toBe(false);
    expect((await cpuFlags(join(sys, "nonexistent"))).size).toBe(0);
  });
  test("isConfigfs: a plain directory (configfs's mount point before the mount) or none is not configfs", () => {
    expect(isConfigfs(guest())).toBe(false);
    expect(isConfigfs("/nonexistent")).toBe(false);
  });
  test("the driver table names the modules the dracut module installs", () => {
    expect(TEE_DRIVERS.tdx).toMatchObject({
      module: "tdx_guest",
      device: "/dev/tdx_guest",
      tsmProvider: "tdx_guest",
    });
    expect(TEE_DRIVERS.snp).toMatchObject({
      module: "sev_guest",
      device: "/dev/sev-guest",
      tsmProvider: "sev_guest",
    });
  });
});
