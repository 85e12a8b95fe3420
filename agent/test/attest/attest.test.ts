import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ccelTableLength, parseCcel, readCcel } from "../../src/attest/ccel.ts";
import { detectTee, selectAttester } from "../../src/attest/index.ts";
import { snpCertChainJson, snpReportJson } from "../../src/attest/snp.ts";
import { parseTdxQuote } from "../../src/attest/tdx.ts";
import { tsmReport } from "../../src/attest/tsm.ts";
import { certTable, VCEK_GUID } from "./fake-sev-guest.ts";
import { fakeTdxTsm, fakeTsm } from "./fake-tsm.ts";
import { FIXTURES, fixture, haveFixtures } from "./fixtures.ts";
import { encodeSev7, parseExact } from "./snp-serde.ts";

// biome-ignore lint/suspicious/noExplicitAny: evidence JSON is checked field by field
type J = Record<string, any>;
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const digest = new Uint8Array(createHash("sha384").update("runtime data").digest());

function emptySys(): string {
  return mkdtempSync(join(tmpdir(), "sys-"));
}

describe.skipIf(!haveFixtures)("TDX quote parsing against trustee's parsed claims", () => {
  const expected = haveFixtures
    ? JSON.parse(readFileSync(join(FIXTURES, "verifier/tdx/parse_tdx_claims_expected.json"), "utf8"))
    : undefined;
  for (const name of ["tdx_quote_4.dat", "tdx_quote_5.dat"]) {
    test(name, () => {
      const q = parseTdxQuote(fixture(`verifier/tdx/${name}`));
      expect(q.version).toBe(name.includes("_4") ? 4 : 5);
      if (q.version === 4) {
        // parse_tdx_claims_expected.json is trustee's parse of the v4 quote.
        const body = expected.quote.body;
        expect(hex(q.reportData)).toBe(body.report_data);
        expect(hex(q.mrTd)).toBe(body.mr_td);
        expect(hex(q.mrConfigId)).toBe(body.mr_config_id);
        expect(q.rtmr.map(hex)).toEqual([body.rtmr_0, body.rtmr_1, body.rtmr_2, body.rtmr_3]);
      } else {
        // v5: body shifted by type+size; MRTD is a 48-byte non-zero measurement, RTMR3 unused.
        expect(q.mrTd.some((b) => b !== 0)).toBe(true);
        expect(q.reportData.length).toBe(64);
      }
    });
  }
  test("rejects an SGX-style v3 header and garbage", () => {
    const q = fixture("verifier/tdx/tdx_quote_4.dat").slice();
    q[0] = 3;
    expect(() => parseTdxQuote(q)).toThrow("unsupported TDX quote version 3");
    expect(() => parseTdxQuote(new Uint8Array(10))).toThrow("too short");
  });
});

describe.skipIf(!haveFixtures)("CCEL event logs match trustee's parsed event lists", () => {
  for (const name of ["CCEL_data_ovmf", "CCEL_data_grub", "CCEL_AAEL_alibabacloud"]) {
    test(name, () => {
      const out = JSON.parse(
        readFileSync(join(FIXTURES, `eventlog/${name}_out.json`), "utf8"),
      ).uefi_event_logs;
      const log = parseCcel(fixture(`eventlog/${name}`));
      expect(log.events.length).toBe(out.length);
      for (let i = 0; i < out.length; i++) {
        const sha384 = log.events[i]!.digests.find((d) => d.alg === 0x0c)!;
        expect(hex(sha384.digest)).toBe(out[i].digests[0].digest);
        expect(Buffer.from(log.events[i]!.data).toString("base64")).toBe(out[i].event);
      }
    });
  }
  test("readCcel trims to the last event, honours the table's LAML and appends 8 x 0xFF", () => {
    const sys = emptySys();
    mkdirSync(join(sys, "sys/firmware/acpi/tables/data"), { recursive: true });
    const data = fixture("eventlog/CCEL_data_ovmf");
    writeFileSync(join(sys, "sys/firmware/acpi/tables/data/CCEL"), data);
    const table = new Uint8Array(56);
    table.set(new TextEncoder().encode("CCEL"));
    new DataView(table.buffer).setBigUint64(40, BigInt(data.length), true);
    writeFileSync(join(sys, "sys/firmware/acpi/tables/CCEL"), table);
    expect(ccelTableLength(table)).toBe(data.length);
    const log = readCcel(sys)!;
    const { length } = parseCcel(data);
    expect(length).toBeLessThan(data.length);
    expect(log.length).toBe(length + 8);
    expect(Buffer.from(log.subarray(0, length)).equals(Buffer.from(data.subarray(0, length)))).toBe(true);
    expect(log.subarray(length).every((b) => b === 0xff)).toBe(true);
    expect(readCcel(emptySys())).toBeUndefined();
  });
});

describe.skipIf(!haveFixtures)("SEV-SNP report JSON", () => {
  for (const name of ["test-report.bin", "test-vlek-report.bin"]) {
    test(`${name} round-trips through the serde JSON byte for byte`, () => {
      const raw = fixture(`verifier/snp/${name}`);
      // The verifier's re-encoding (snp-serde.ts), to prove the JSON loses nothing.
      const json = parseExact(JSON.stringify(snpReportJson(raw)));
      expect(hex(encodeSev7(json))).toBe(hex(raw));
      expect(json.report_data).toEqual(Array.from(raw.subarray(0x50, 0x90)));
    });
  }
  test("v3 Milan report: CPUID fields present, TCB in the Milan layout (fmc null)", () => {
    const json = snpReportJson(fixture("verifier/snp/test-vlek-report.bin")) as J;
    expect(json.version).toBe(3);
    expect([json.cpuid_fam_id, json.cpuid_mod_id]).toEqual([0x19, 0x01]);
    expect(json.reported_tcb).toEqual({
      fmc: null,
      bootloader: 4,
      tee: 0,
      _reserved: [0, 0, 0, 0],
      snp: 0x18,
      microcode: 0xd9,
    });
    expect(json.launch_mit_vector).toBeNull();
  });
  test("u64 fields are exact JSON integers beyond 2^53", () => {
    const raw = fixture("verifier/snp/test-report.bin").slice();
    new DataView(raw.buffer).setBigUint64(0x08, 0xffffffffffffffffn, true);
    expect(JSON.stringify(snpReportJson(raw))).toContain('"policy":18446744073709551615');
  });
  test("certificate table → cert_chain entries", () => {
    const vcek = fixture("verifier/snp/test-vcek.der");
    const table = certTable(VCEK_GUID, vcek);
    expect(snpCertChainJson(table)).toEqual([{ cert_type: "VCEK", data: Array.from(vcek) }]);
    expect(snpCertChainJson(new Uint8Array(24))).toBeNull();
    new DataView(table.buffer).setUint32(20, 100000, true);
    expect(() => snpCertChainJson(table)).toThrow("points past the table end");
  });
});

describe("configfs-tsm ABI", () => {
  test("sequence: provider check, privlevel then inblob, generation, entry removed", async () => {
    const tsm = await fakeTsm("sev_guest", (inblob) => ({
      outblob: inblob.slice().reverse(),
      auxblob: new Uint8Array([7]),
    }));
    const inblob = new Uint8Array(64).fill(5);
    const r = await tsmReport({
      root: tsm.root,
      fs: tsm.fs,
      provider: "sev_guest",
      inblob,
      privlevel: 0,
      auxblob: true,
    });
    expect(r.outblob[0]).toBe(5);
    expect(Array.from(r.auxblob!)).toEqual([7]);
    expect(await tsm.entries()).toEqual([]);
  });
  test("wrong provider, wrong length and a missing configfs give clear errors", async () => {
    const tsm = await fakeTsm("tdx_guest", (inblob) => ({ outblob: inblob }));
    const inblob = new Uint8Array(64);
    await expect(tsmReport({ root: tsm.root, fs: tsm.fs, provider: "sev_guest", inblob })).rejects.toThrow(
      'provider is "tdx_guest", expected "sev_guest"',
    );
    await expect(
      tsmReport({ root: tsm.root, fs: tsm.fs, provider: "tdx_guest", inblob: new Uint8Array(48) }),
    ).rejects.toThrow("must be 64 bytes");
    await expect(tsmReport({ root: "/nonexistent/tsm", provider: "tdx_guest", inblob })).rejects.toThrow(
      "configfs-tsm: cannot create",
    );
    expect(await tsm.entries()).toEqual([]);
  });
  test("a concurrent writer (generation jump) is detected", async () => {
    const tsm = await fakeTsm("tdx_guest", (inblob) => ({ outblob: inblob }));
    const fs = {
      ...tsm.fs,
      writeFile: async (p: string, d: Uint8Array | string) => {
        await tsm.fs.writeFile(p, d);
        await tsm.fs.writeFile(p, d);
      },
    };
    await expect(
      tsmReport({ root: tsm.root, fs, provider: "tdx_guest", inblob: new Uint8Array(64) }),
    ).rejects.toThrow("concurrent report request");
  });
});

describe("TEE detection and selection", () => {
  test("no TEE and no setting: clear error; sample only on request", async () => {
    const paths = { tsmRoot: "/nonexistent", sysRoot: emptySys() };
    expect(await detectTee(paths)).toBeUndefined();
    await expect(selectAttester({ paths, env: {} })).rejects.toThrow("no TEE found");
    expect((await selectAttester({ paths, env: { CRYPTPILOT_TEE: "sample" } })).tee).toBe("sample");
    expect((await selectAttester({ paths, env: {}, tee: "sample" })).tee).toBe("sample");
    await expect(selectAttester({ paths, env: {}, tee: "sgx" })).rejects.toThrow('unknown TEE "sgx"');
  });
  test("an attestation interface is itself a sign: configfs-tsm provider, /dev/tdx_guest", async () => {
    const sys = emptySys();
    mkdirSync(join(sys, "sys/devices/platform/sev-guest"), { recursive: true });
    expect(await detectTee({ tsmRoot: "/nonexistent", sysRoot: sys })).toBe("snp");
    const tsm = await fakeTsm("tdx_guest", (inblob) => ({ outblob: inblob }));
    expect(await detectTee({ tsmRoot: tsm.root, sysRoot: emptySys() }, tsm.fs)).toBe("tdx");
    const tdx = emptySys();
    mkdirSync(join(tdx, "dev"));
    writeFileSync(join(tdx, "dev/tdx_guest"), "");
    expect(await detectTee({ tsmRoot: "/nonexistent", sysRoot: tdx })).toBe("tdx");
    // Signs of both TEEs cannot come from one kernel: refused rather than picking one.
    await expect(detectTee({ tsmRoot: tsm.root, sysRoot: sys }, tsm.fs)).rejects.toThrow(
      "conflicting TEE signs",
    );
  });
  test("detection order: snp before tpm; a TPM device alone means tpm", async () => {
    const sys = emptySys();
    mkdirSync(join(sys, "dev"));
    writeFileSync(join(sys, "dev/tpmrm0"), "");
    expect(await detectTee({ tsmRoot: "/nonexistent", sysRoot: sys })).toBe("tpm");
    mkdirSync(join(sys, "sys/devices/platform/sev-guest"), { recursive: true });
    expect(await detectTee({ tsmRoot: "/nonexistent", sysRoot: sys })).toBe("snp");
  });
  test("sample evidence carries the 48-byte digest unpadded", async () => {
    const ev = (await (await selectAttester({ tee: "sample" })).evidence(digest)) as J;
    expect(ev).toEqual({ svn: "1", report_data: Buffer.from(digest).toString("base64") });
  });
});

describe.skipIf(!haveFixtures)("TDX and SNP evidence through a fake configfs-tsm", () => {
  test("tdx: zero-padded REPORTDATA in the quote, CCEL attached", async () => {
    const quote = fixture("verifier/tdx/tdx_quote_5.dat");
    const tsm = await fakeTdxTsm(quote, "v5");
    const sys = emptySys();
    mkdirSync(join(sys, "sys/firmware/acpi/tables/data"), { recursive: true });
    writeFileSync(join(sys, "sys/firmware/acpi/tables/data/CCEL"), fixture("eventlog/CCEL_data_grub"));
    const attester = await selectAttester({
      paths: { tsmRoot: tsm.root, sysRoot: sys },
      fs: tsm.fs,
      env: {},
    });
    expect(attester.tee).toBe("tdx");
    const ev = (await attester.evidence(digest)) as J;
    expect(Object.keys(ev).sort()).toEqual(["cc_eventlog", "quote"]);
    const q = parseTdxQuote(Buffer.from(ev.quote, "base64"));
    expect(hex(q.reportData)).toBe(hex(digest) + "00".repeat(16));
    expect(parseCcel(Buffer.from(ev.cc_eventlog, "base64")).events.length).toBe(37);
    expect(tsm.inblobs.length).toBe(1);
  });
  test("tdx: a quote that does not carry our REPORTDATA is refused", async () => {
    const quote = fixture("verifier/tdx/tdx_quote_4.dat");
    const tsm = await fakeTsm("tdx_guest", () => ({ outblob: quote }));
    const attester = await selectAttester({
      paths: { tsmRoot: tsm.root, sysRoot: emptySys() },
      fs: tsm.fs,
      tee: "tdx",
    });
    await expect(attester.evidence(digest)).rejects.toThrow("does not carry the requested REPORTDATA");
  });
  test("snp: VMPL 0 report with our REPORT_DATA and the cert table", async () => {
    const report = fixture("verifier/snp/test-vlek-report.bin");
    const vlek = fixture("verifier/snp/test-vlek.der");
    const table = new Uint8Array(48 + vlek.length);
    table.set(Buffer.from("a8074bc2a25a483eaae639c045a0b8a1", "hex"));
    new DataView(table.buffer).setUint32(16, 48, true);
    new DataView(table.buffer).setUint32(20, vlek.length, true);
    table.set(vlek, 48);
    const tsm = await fakeTsm("sev_guest", (inblob) => {
      const r = report.slice();
      r.set(inblob, 0x50);
      return { outblob: r, auxblob: table };
    });
    const attester = await selectAttester({
      paths: { tsmRoot: tsm.root, sysRoot: emptySys() },
      fs: tsm.fs,
      tee: "snp",
    });
    const ev = JSON.parse(JSON.stringify(await attester.evidence(digest)));
    expect(ev.attestation_report.report_data).toEqual([...digest, ...new Array(16).fill(0)]);
    expect(ev.cert_chain[0].cert_type).toBe("VLEK");
    expect(await tsm.entries()).toEqual([]);
  });
});
