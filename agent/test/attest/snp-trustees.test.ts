/**
 * SNP evidence JSON against both trustees' serde forms (snp-serde.ts): the same JSON deserialises
 * as sev 7 (confidential-containers/trustee) and sev 4.0.0 (openanolis/trustee), and each
 * verifier's re-encoding gives back the signed bytes, for real reports (Milan VCEK v2, Milan VLEK
 * v3) and a Turin v5 report built from one (Turin is where the forms conflict).
 */
import { describe, expect, test } from "bun:test";
import { snpCertChainJson, snpReportJson } from "../../src/attest/snp.ts";
import { createTdxAttester } from "../../src/attest/tdx.ts";
import { certTable, VCEK_GUID } from "./fake-sev-guest.ts";
import { fakeTdxTsm } from "./fake-tsm.ts";
import { fixture, haveFixtures } from "./fixtures.ts";
import {
  bincodeSev4,
  CERT_TYPE_VARIANTS,
  encodeSev7,
  parseExact,
  SEV4_REPORT,
  SEV7_REPORT,
  serdeCheck,
  TDX_EVIDENCE_COCO,
  TDX_EVIDENCE_OPENANOLIS,
} from "./snp-serde.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
/** What a trustee receives: our JSON as text, parsed with exact u64s. */
const wire = (raw: Uint8Array, format?: "coco" | "openanolis") =>
  parseExact(JSON.stringify(snpReportJson(raw, format)));

/** A Turin (family 0x1A) v5 report: TCB [fmc,bl,tee,snp,0,0,0,ucode] as in trustee's turin-report.bin. */
function turin(): Uint8Array {
  const r = fixture("verifier/snp/test-report.bin").slice();
  const v = new DataView(r.buffer);
  v.setUint32(0, 5, true);
  for (const o of [0x38, 0x180, 0x1e0, 0x1f0]) r.set([0x01, 0x03, 0x02, 0x05, 0, 0, 0, 0x61], o);
  r.set([0x1a, 0x02, 0x01], 0x188);
  v.setBigUint64(0x1f8, 0x3fn, true);
  v.setBigUint64(0x200, 0x3fn, true);
  return r;
}

describe.skipIf(!haveFixtures)("SNP evidence deserialises in both trustees", () => {
  const milan = ["test-report.bin", "test-vlek-report.bin"];
  for (const name of milan) {
    test(`${name}: one JSON, accepted and re-encoded byte for byte by sev 7 and sev 4.0.0`, () => {
      const raw = fixture(`verifier/snp/${name}`);
      const json = wire(raw);
      serdeCheck(json, { struct: SEV7_REPORT });
      serdeCheck(json, { struct: SEV4_REPORT });
      expect(hex(encodeSev7(json))).toBe(hex(raw));
      expect(hex(bincodeSev4(json))).toBe(hex(raw));
      // Milan/Genoa: the format setting makes no difference.
      expect(JSON.stringify(snpReportJson(raw, "openanolis"))).toBe(
        JSON.stringify(snpReportJson(raw, "coco")),
      );
    });
  }
  test("non-zero reserved bytes survive (sev 4 signs over them via bincode)", () => {
    const raw = fixture("verifier/snp/test-report.bin").slice();
    for (const o of [0x4c, 0x18b, 0x1eb, 0x1ef, 0x210, 0x330, 0x49f]) raw[o] = 0xa5;
    raw.set([9, 9, 9, 9], 0x3a); // current_tcb reserved bytes
    expect(hex(bincodeSev4(wire(raw)))).toBe(hex(raw));
  });
  test("u64 fields beyond 2^53 survive in both forms", () => {
    const raw = fixture("verifier/snp/test-report.bin").slice();
    new DataView(raw.buffer).setBigUint64(0x08, 0xfedcba9876543210n, true);
    const json = wire(raw);
    expect(hex(bincodeSev4(json))).toBe(hex(raw));
    expect(hex(encodeSev7(json))).toBe(hex(raw));
  });
  test('Turin: format "coco" round-trips through sev 7, "openanolis" through sev 4.0.0', () => {
    const raw = turin();
    const coco = wire(raw, "coco");
    serdeCheck(coco, { struct: SEV7_REPORT });
    expect(coco.reported_tcb).toEqual({ fmc: 1, bootloader: 3, tee: 2, snp: 5, microcode: 0x61 });
    expect(hex(encodeSev7(coco))).toBe(hex(raw));
    // sev 4 would misread it: refused at deserialising rather than at the signature.
    expect(() => serdeCheck(coco, { struct: SEV4_REPORT })).toThrow("missing field `_reserved`");

    const anolis = wire(raw, "openanolis");
    serdeCheck(anolis, { struct: SEV4_REPORT });
    expect(hex(bincodeSev4(anolis))).toBe(hex(raw));
    expect(anolis.reported_tcb).toEqual({
      bootloader: 1,
      tee: 3,
      _reserved: [2, 5, 0, 0],
      snp: 0,
      microcode: 0x61,
    });
  });
  test("cert_chain entries use CertType names both versions share", () => {
    const vcek = fixture("verifier/snp/test-vcek.der");
    const table = certTable(VCEK_GUID, vcek);
    const [entry] = snpCertChainJson(table) as { cert_type: string }[];
    expect(CERT_TYPE_VARIANTS).toContain(entry!.cert_type);
  });
});

describe.skipIf(!haveFixtures)("TDX evidence deserialises in both trustees", () => {
  test("{cc_eventlog, quote} fits both TdxEvidence structs", async () => {
    const quote = fixture("verifier/tdx/tdx_quote_4.dat");
    const tsm = await fakeTdxTsm(quote, "v4");
    const attester = createTdxAttester({ tsmRoot: tsm.root, sysRoot: "/nonexistent" }, tsm.fs);
    const ev = JSON.parse(JSON.stringify(await attester.evidence(new Uint8Array(48))));
    serdeCheck(ev, { struct: TDX_EVIDENCE_COCO });
    serdeCheck(ev, { struct: TDX_EVIDENCE_OPENANOLIS });
  });
});

describe("the serde model itself can fail", () => {
  test("a missing required field or a wrong array length is refused", () => {
    expect(() => serdeCheck({}, { struct: SEV4_REPORT })).toThrow("missing field `version`");
    const tcb = SEV4_REPORT.find(([n]) => n === "current_tcb")![1];
    expect(() =>
      serdeCheck({ bootloader: 1, tee: 1, _reserved: [0, 0, 0], snp: 1, microcode: 1 }, tcb),
    ).toThrow("array of 4");
  });
});
