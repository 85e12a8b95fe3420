/**
 * Register choice and the TDX paths against a fake root (sysRoot): the sysfs file gets exactly
 * the entry digest and the record lands 0600 under /run/cryptpilot; without sysfs, the ioctl gets
 * Intel's request number and layout, and a failed extend takes the record back; every missing
 * register is `unavailable` with a reason naming what is missing (there is no no-op measurer).
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Ioctl } from "../../src/attest/ioctl.ts";
import { entryDigest, loadConfigUntrusted } from "../../src/measure/aael.ts";
import { type MeasureOptions, type Measurer, openMeasurer } from "../../src/measure/open.ts";
import { parseRecords, RECORDS_PATH } from "../../src/measure/records.ts";
import { TDX_MEASUREMENTS_DIR } from "../../src/measure/tdx.ts";

let root: string;
const put = (path: string, data: string | Uint8Array = "") => {
  mkdirSync(dirname(join(root, path)), { recursive: true });
  writeFileSync(join(root, path), data);
};
const options = (extra: Partial<MeasureOptions> = {}): MeasureOptions => ({
  paths: { sysRoot: root, tsmRoot: join(root, "sys/kernel/config/tsm") },
  env: {},
  ...extra,
});
const event = loadConfigUntrusted(createHash("sha384").update("bundle").digest("hex"));
const rtmrFile = () => join(root, TDX_MEASUREMENTS_DIR, "rtmr3:sha384");
const records = () => join(root, RECORDS_PATH);

function measurerOf(m: Awaited<ReturnType<typeof openMeasurer>>): Measurer {
  if ("unavailable" in m) throw new Error(`unexpected: ${m.unavailable}`);
  return m;
}

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "measure-"));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe("TDX RTMR3", () => {
  beforeEach(() => put("/proc/cpuinfo", "processor : 0\nflags : fpu tdx_guest\n"));

  test("sysfs: the file gets the 48-byte entry digest, the record is kept 0600", async () => {
    put(`${TDX_MEASUREMENTS_DIR}/rtmr3:sha384`);
    const m = measurerOf(await openMeasurer(options()));
    expect(m.register).toBe("TDX RTMR3");
    await m.extend(event);
    expect(Buffer.from(readFileSync(rtmrFile())).equals(Buffer.from(entryDigest(event, "sha384")))).toBe(
      true,
    );
    expect(statSync(records()).mode & 0o777).toBe(0o600);
    const [rec] = parseRecords(new Uint8Array(readFileSync(records())));
    expect(rec!.mrIndex).toBe(4);
    expect(rec!.digests[0]!.alg).toBe(0x000c);
  });

  test("ioctl: TDX_CMD_EXTEND_RTMR = _IOR('T', 3, 49) with data[48] then index 3", async () => {
    put("/dev/tdx_guest");
    const calls: { request: number; arg: Uint8Array }[] = [];
    const ioctl: Ioctl = {
      call: (_fd, request, arg) => {
        calls.push({ request, arg: arg.slice() });
        return 0;
      },
      address: () => 0n,
    };
    const m = measurerOf(await openMeasurer(options({ tdx: { ioctl } })));
    await m.extend(event);
    // dir READ (2) << 30 | size 49 << 16 | 'T' << 8 | 3, computed by hand.
    expect(calls[0]!.request).toBe(0x80315403);
    expect(calls[0]!.arg.length).toBe(49);
    expect(Buffer.from(calls[0]!.arg.subarray(0, 48)).equals(Buffer.from(entryDigest(event, "sha384")))).toBe(
      true,
    );
    expect(calls[0]!.arg[48]).toBe(3);
  });

  test("a failed extend throws naming the ioctl and takes the record back", async () => {
    put("/dev/tdx_guest");
    const ioctl: Ioctl = { call: () => 25 /* ENOTTY */, address: () => 0n };
    const m = measurerOf(await openMeasurer(options({ tdx: { ioctl } })));
    await expect(m.extend(event)).rejects.toThrow(/TDX_CMD_EXTEND_RTMR.*ENOTTY/);
    expect(readFileSync(records()).length).toBe(0);
  });

  test("no sysfs file and no device: unavailable, naming both and the module", async () => {
    const m = await openMeasurer(options());
    expect("unavailable" in m && m.unavailable).toMatch(/rtmr3:sha384.*\/dev\/tdx_guest.*tdx_guest module/);
  });

  test("a symlink planted at the records path is not followed", async () => {
    put(`${TDX_MEASUREMENTS_DIR}/rtmr3:sha384`);
    put("/elsewhere");
    mkdirSync(dirname(records()), { recursive: true });
    symlinkSync(join(root, "elsewhere"), records());
    const m = measurerOf(await openMeasurer(options()));
    await expect(m.extend(event)).rejects.toThrow(/runtime measurement log/);
    expect(readFileSync(rtmrFile()).length).toBe(0);
    expect(readFileSync(join(root, "elsewhere")).length).toBe(0);
  });
});

describe("no register", () => {
  test("no TEE and no TPM", async () => {
    const m = await openMeasurer(options());
    expect("unavailable" in m && m.unavailable).toMatch(/not a TDX guest.*no TPM/);
  });
  test("SEV-SNP has no replayed runtime register", async () => {
    put("/sys/devices/platform/sev-guest/x");
    const m = await openMeasurer(options());
    expect("unavailable" in m && m.unavailable).toMatch(/SEV-SNP/);
  });
  test("tee = sample, an unknown tee, conflicting signs", async () => {
    expect(await openMeasurer(options({ tee: "sample" }))).toHaveProperty("unavailable");
    expect(await openMeasurer(options({ env: { CRYPTPILOT_TEE: "nope" } }))).toHaveProperty("unavailable");
    put("/proc/cpuinfo", "flags : tdx_guest\n");
    put("/sys/devices/platform/sev-guest/x");
    const m = await openMeasurer(options());
    expect("unavailable" in m && m.unavailable).toMatch(/conflicting/);
  });
  test("a TPM that cannot be opened: unavailable naming the TCTI", async () => {
    const m = await openMeasurer(options({ tee: "tpm", tcti: `device:${root}/dev/tpmrm0` }));
    expect("unavailable" in m && m.unavailable).toMatch(/TPM.*tpmrm0/);
  });
});
