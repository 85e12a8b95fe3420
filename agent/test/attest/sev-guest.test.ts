import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { closeSync, mkdtempSync, openSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { kernelBuffer, libcIoctl } from "../../src/attest/ioctl.ts";
import {
  SNP_BUSY_RETRIES,
  SNP_CERTS_INITIAL_BYTES,
  SNP_GET_EXT_REPORT,
  SNP_GET_REPORT,
  snpReportFromDevice,
} from "../../src/attest/sev-guest.ts";
import { createSnpAttester, snpInterface } from "../../src/attest/snp.ts";
import { ERRNO } from "../../src/libc.ts";
import { certTable, fakeSevGuest, VCEK_GUID } from "./fake-sev-guest.ts";
import { fixture, haveFixtures } from "./fixtures.ts";

const reportData = new Uint8Array(64).fill(0x42);
const noSleep = async () => {};
const digest = new Uint8Array(createHash("sha384").update("runtime data").digest());

test("request numbers are _IOWR('S', n, struct snp_guest_request_ioctl)", () => {
  expect(SNP_GET_REPORT).toBe(0xc0205300);
  expect(SNP_GET_EXT_REPORT).toBe(0xc0205302);
});

describe("the real ioctl through bun:ffi and libc", () => {
  test("a file that is no sev-guest device: ENOTTY read from errno, both requests named", async () => {
    const fd = openSync("/dev/null", "r");
    try {
      expect(libcIoctl().call(fd, SNP_GET_REPORT, kernelBuffer(32))).toBe(ERRNO.ENOTTY);
    } finally {
      closeSync(fd);
    }
    await expect(snpReportFromDevice(reportData, { device: "/dev/null", sleep: noSleep })).rejects.toThrow(
      "SNP_GET_REPORT (after SNP_GET_EXT_REPORT was refused) on /dev/null failed: ENOTTY (25)",
    );
  });
});

describe.skipIf(!haveFixtures)("/dev/sev-guest through a fake kernel", () => {
  const report = haveFixtures ? fixture("verifier/snp/test-report.bin") : new Uint8Array();
  const vcek = haveFixtures ? fixture("verifier/snp/test-vcek.der") : new Uint8Array();

  test("extended report: the cert buffer grows to the length the kernel writes back", async () => {
    const table = certTable(VCEK_GUID, new Uint8Array(6000).fill(7)); // needs 2 pages
    const dev = fakeSevGuest({ report, certs: table });
    const r = await snpReportFromDevice(reportData, { device: dev.device, ioctl: dev.ioctl, sleep: noSleep });
    expect(dev.calls).toEqual([`EXT ${SNP_CERTS_INITIAL_BYTES}`, "EXT 8192"]);
    expect(Array.from(r.report.subarray(0x50, 0x90))).toEqual(Array.from(reportData));
    expect(r.report.length).toBe(1184);
    expect(Buffer.from(r.certs!.subarray(0, table.length)).equals(Buffer.from(table))).toBe(true);
  });
  test("a host without certificates: one extended request, no cert table", async () => {
    const dev = fakeSevGuest({ report });
    const r = await snpReportFromDevice(reportData, { device: dev.device, ioctl: dev.ioctl, sleep: noSleep });
    expect(dev.calls).toEqual([`EXT ${SNP_CERTS_INITIAL_BYTES}`]);
    expect(r.certs).toBeUndefined();
  });
  test("a host refusing extended requests: SNP_GET_REPORT", async () => {
    const dev = fakeSevGuest({ report, noExt: true });
    const r = await snpReportFromDevice(reportData, { device: dev.device, ioctl: dev.ioctl, sleep: noSleep });
    expect(dev.calls).toEqual([`EXT ${SNP_CERTS_INITIAL_BYTES}`, "GET"]);
    expect(r.certs).toBeUndefined();
    expect(Array.from(r.report.subarray(0x50, 0x90))).toEqual(Array.from(reportData));
  });
  test("busy host: retried a bounded number of times", async () => {
    const ok = fakeSevGuest({ report, busy: 2 });
    let sleeps = 0;
    const sleep = async () => void sleeps++;
    await snpReportFromDevice(reportData, { device: ok.device, ioctl: ok.ioctl, sleep });
    expect(sleeps).toBe(2);
    const stuck = fakeSevGuest({ report, busy: 1000 });
    await expect(
      snpReportFromDevice(reportData, { device: stuck.device, ioctl: stuck.ioctl, sleep: noSleep }),
    ).rejects.toThrow("VMM error 0x2");
    expect(stuck.calls.length).toBe(SNP_BUSY_RETRIES + 1);
  });
  test("firmware errors and bad responses stop with the device and the codes named; no fallback", async () => {
    const fw = fakeSevGuest({ report, fwError: 0x16 });
    await expect(
      snpReportFromDevice(reportData, { device: fw.device, ioctl: fw.ioctl, sleep: noSleep }),
    ).rejects.toThrow(/SNP_GET_EXT_REPORT on .*sev-guest failed: EIO \(5\), firmware error 0x16/);
    expect(fw.calls).toEqual([`EXT ${SNP_CERTS_INITIAL_BYTES}`]);
    const status = fakeSevGuest({ report, status: 0x27 });
    await expect(
      snpReportFromDevice(reportData, { device: status.device, ioctl: status.ioctl, sleep: noSleep }),
    ).rejects.toThrow("firmware status 0x27");
    const size = fakeSevGuest({ report, reportSize: 4000 });
    await expect(
      snpReportFromDevice(reportData, { device: size.device, ioctl: size.ioctl, sleep: noSleep }),
    ).rejects.toThrow("4000-byte report, expected 1184");
  });
  test("no device: the error names it and the module", async () => {
    await expect(snpReportFromDevice(reportData, { device: "/nonexistent/sev-guest" })).rejects.toThrow(
      /cannot open \/nonexistent\/sev-guest/,
    );
  });
  test("neither configfs-tsm nor the device: the error names both and the module", async () => {
    const sys = mkdtempSync(join(tmpdir(), "no-sev-"));
    const attester = createSnpAttester({ tsmRoot: join(sys, "tsm"), sysRoot: sys });
    await expect(attester.evidence(digest)).rejects.toThrow(
      /no configfs-tsm provider sev_guest under .*\/tsm and no .*\/dev\/sev-guest/,
    );
  });
  test("the attester uses /dev/sev-guest when configfs-tsm is absent", async () => {
    const dev = fakeSevGuest({ report, certs: certTable(VCEK_GUID, vcek) });
    const paths = { tsmRoot: join(mkdtempSync(join(tmpdir(), "no-tsm-")), "tsm"), sysRoot: dev.sysRoot };
    expect(await snpInterface(paths)).toBe("sev-guest");
    const attester = createSnpAttester(paths, undefined, { device: { ioctl: dev.ioctl, sleep: noSleep } });
    const ev = JSON.parse(JSON.stringify(await attester.evidence(digest)));
    expect(ev.attestation_report.report_data).toEqual([...digest, ...new Array(16).fill(0)]);
    expect(ev.attestation_report.vmpl).toBe(0);
    expect(ev.cert_chain).toEqual([{ cert_type: "VCEK", data: Array.from(vcek) }]);
  });
});
