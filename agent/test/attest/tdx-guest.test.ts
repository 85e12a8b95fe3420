import { describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Ioctl } from "../../src/attest/ioctl.ts";
import { createTdxAttester } from "../../src/attest/tdx.ts";
import { TDX_CMD_GET_REPORT0, tdxReportFromDevice } from "../../src/attest/tdx-guest.ts";
import { ERRNO } from "../../src/libc.ts";

function sysWithTdxGuest(): string {
  const sys = mkdtempSync(join(tmpdir(), "fake-tdx-"));
  mkdirSync(join(sys, "dev"));
  writeFileSync(join(sys, "dev/tdx_guest"), "");
  return sys;
}

describe("/dev/tdx_guest", () => {
  test("TDX_CMD_GET_REPORT0 is _IOWR('T', 1, struct tdx_report_req)", () => {
    expect(TDX_CMD_GET_REPORT0).toBe(0xc4405401);
  });
  test("GET_REPORT0 through a fake kernel: REPORTDATA in, the 1024-byte TDREPORT out", () => {
    const sys = sysWithTdxGuest();
    const seen: number[] = [];
    const ioctl: Ioctl = {
      call(_fd, request, arg) {
        seen.push(request);
        if (request !== TDX_CMD_GET_REPORT0 || arg.length !== 1088) return ERRNO.ENOTTY;
        arg.fill(0xee, 64); // TDREPORT
        arg.set(arg.subarray(0, 64), 64 + 128); // REPORTDATA inside REPORTMACSTRUCT
        return 0;
      },
      address: () => 0n,
    };
    const rd = new Uint8Array(64).fill(3);
    const tdreport = tdxReportFromDevice(rd, { device: join(sys, "dev/tdx_guest"), ioctl });
    expect(tdreport.length).toBe(1024);
    expect(Array.from(tdreport.subarray(128, 192))).toEqual(Array.from(rd));
    expect(seen).toEqual([TDX_CMD_GET_REPORT0]);
    const failing: Ioctl = { call: () => ERRNO.EIO, address: () => 0n };
    expect(() => tdxReportFromDevice(rd, { device: join(sys, "dev/tdx_guest"), ioctl: failing })).toThrow(
      "TDX_CMD_GET_REPORT0 on",
    );
  });
  test("a TDX guest with /dev/tdx_guest but no configfs-tsm: no quote, a clear error", async () => {
    const sys = sysWithTdxGuest();
    const attester = createTdxAttester({ tsmRoot: join(sys, "no-tsm"), sysRoot: sys });
    await expect(attester.evidence(new Uint8Array(48))).rejects.toThrow(
      /this kernel offers no TD quote: .*\/dev\/tdx_guest gives only a TDREPORT/,
    );
  });
});
