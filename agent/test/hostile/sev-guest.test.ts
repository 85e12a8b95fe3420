/**
 * The host answers /dev/sev-guest's extended requests (issue #15): the certificate length it asks
 * for, the certificate table and the busy answers are its choice. Each case is a fake kernel
 * (agent/test/attest/fake-sev-guest.ts) doing one thing wrong; the agent must stop with an error
 * naming the device or the table, within bounded time, memory and number of requests.
 */
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  SNP_BUSY_DELAY_MS,
  SNP_BUSY_RETRIES,
  SNP_CERTS_MAX_BYTES,
  snpReportFromDevice,
} from "../../src/attest/sev-guest.ts";
import { createSnpAttester } from "../../src/attest/snp.ts";
import { certTable, type FakeHost, fakeSevGuest, VCEK_GUID } from "../attest/fake-sev-guest.ts";
import { fakeTsm } from "../attest/fake-tsm.ts";
import { fixture, haveFixtures } from "../attest/fixtures.ts";
import { bounded } from "./limits.ts";

const CASE = { ms: 5_000, mib: 200 };
const rd = new Uint8Array(64).fill(1);
const noSleep = async () => {};
const digest = new Uint8Array(createHash("sha384").update("x").digest());

function attester(host: FakeHost) {
  const dev = fakeSevGuest(host);
  const paths = { tsmRoot: join(mkdtempSync(join(tmpdir(), "no-tsm-")), "tsm"), sysRoot: dev.sysRoot };
  return {
    dev,
    attester: createSnpAttester(paths, undefined, { device: { ioctl: dev.ioctl, sleep: noSleep } }),
  };
}

describe.skipIf(!haveFixtures)("hostile /dev/sev-guest answers", () => {
  const report = haveFixtures ? fixture("verifier/snp/test-report.bin") : new Uint8Array();
  const certs = certTable(VCEK_GUID, new Uint8Array(6000));

  test("a certificate length of ~4 GiB is refused without allocating it", async () => {
    const dev = fakeSevGuest({ report, certs, neededLen: () => 0xfffff000 });
    await bounded(async () => {
      await expect(
        snpReportFromDevice(rd, { device: dev.device, ioctl: dev.ioctl, sleep: noSleep }),
      ).rejects.toThrow(
        `asks for a 4294963200-byte certificate buffer after 4096 bytes (at most ${SNP_CERTS_MAX_BYTES}`,
      );
    }, CASE);
    expect(dev.calls.length).toBe(1);
  });
  test("a host that asks for one page more every time is stopped after a bounded number of rounds", async () => {
    const dev = fakeSevGuest({ report, certs: new Uint8Array(60_000), neededLen: (asked) => asked + 4096 });
    await expect(
      snpReportFromDevice(rd, { device: dev.device, ioctl: dev.ioctl, sleep: noSleep }),
    ).rejects.toThrow("growing at most");
    expect(dev.calls.length).toBeLessThanOrEqual(3);
  });
  test("a length that is not page-aligned, or not larger, is refused", async () => {
    for (const neededLen of [() => 6000, (asked: number) => asked]) {
      const dev = fakeSevGuest({ report, certs, neededLen });
      await expect(
        snpReportFromDevice(rd, { device: dev.device, ioctl: dev.ioctl, sleep: noSleep }),
      ).rejects.toThrow("certificate buffer");
    }
  });
  test("busy forever: bounded retries and total delay", async () => {
    const dev = fakeSevGuest({ report, busy: Number.MAX_SAFE_INTEGER });
    let slept = 0;
    const sleep = async (ms: number) => {
      slept += ms;
    };
    await expect(snpReportFromDevice(rd, { device: dev.device, ioctl: dev.ioctl, sleep })).rejects.toThrow(
      "VMM error 0x2",
    );
    expect(dev.calls.length).toBe(SNP_BUSY_RETRIES + 1);
    expect(slept).toBe(SNP_BUSY_RETRIES * SNP_BUSY_DELAY_MS);
  });
  test("a certificate table entry pointing past the table is refused, naming it", async () => {
    const bad = certTable(VCEK_GUID, new Uint8Array(100));
    new DataView(bad.buffer).setUint32(20, 0xffffffff, true);
    const { attester: a } = attester({ report, certs: bad });
    await bounded(async () => {
      await expect(a.evidence(digest)).rejects.toThrow(
        "certificate table entry 63da758d-e664-4564-adc5-f4b93be8accd points past the table end",
      );
    }, CASE);
  });
  test("overlapping certificate entries (each the whole table) are refused, not copied", async () => {
    // Through configfs-tsm's auxblob, whose size the host picks: copied per entry this would be
    // 2,700 x 64 KiB as JSON number arrays.
    const table = new Uint8Array(64 * 1024);
    const view = new DataView(table.buffer);
    const entries = Math.floor(table.length / 24) - 1;
    for (let i = 0; i < entries; i++) {
      table.set(Buffer.from("63da758de6644564adc5f4b93be8accd", "hex"), i * 24);
      view.setUint32(i * 24 + 16, 0, true);
      view.setUint32(i * 24 + 20, table.length, true);
    }
    const tsm = await fakeTsm("sev_guest", (inblob) => {
      const r = report.slice();
      r.set(inblob, 0x50);
      return { outblob: r, auxblob: table };
    });
    const a = createSnpAttester({ tsmRoot: tsm.root, sysRoot: "/nonexistent" }, tsm.fs);
    await bounded(async () => {
      await expect(a.evidence(digest)).rejects.toThrow("overlapping");
    }, CASE);
  });
  test("a replayed report (not carrying our REPORT_DATA) is refused", async () => {
    const { attester: a } = attester({ report, replay: true });
    await expect(a.evidence(digest)).rejects.toThrow(
      "SEV-SNP report from sev-guest does not carry the requested REPORT_DATA",
    );
  });
});
