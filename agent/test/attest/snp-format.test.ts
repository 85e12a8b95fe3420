/** `snp_evidence_format` from the kbs provider table down to the SNP evidence. */
import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { selectAttester } from "../../src/attest/index.ts";
import { EncryptSchema, type KbsConfig, providerToToml } from "../../src/config/providers/index.ts";
import { fakeTsm } from "./fake-tsm.ts";
import { fixture, haveFixtures } from "./fixtures.ts";

const base = { kbs_url: "https://kbs:8080", key_uri: "kbs:///default/key/rootfs" };

describe("snp_evidence_format setting", () => {
  test("parsed, round-tripped to TOML, absent by default; other values refused", () => {
    const c = v.parse(EncryptSchema, { kbs: { ...base, snp_evidence_format: "openanolis" } }) as KbsConfig;
    expect(c.snpEvidenceFormat).toBe("openanolis");
    expect(providerToToml(c)).toMatchObject({ kbs: { snp_evidence_format: "openanolis" } });
    expect((v.parse(EncryptSchema, { kbs: base }) as KbsConfig).snpEvidenceFormat).toBeUndefined();
    expect(v.safeParse(EncryptSchema, { kbs: { ...base, snp_evidence_format: "sev4" } }).success).toBe(false);
  });
  test.skipIf(!haveFixtures)("selectAttester passes it to the SNP attester (Turin TCB names)", async () => {
    const report = fixture("verifier/snp/test-report.bin").slice();
    new DataView(report.buffer).setUint32(0, 3, true);
    report.set([0x1a, 0x02, 0x01], 0x188); // Turin
    report.set([1, 3, 2, 5, 0, 0, 0, 0x61], 0x180);
    const tsm = await fakeTsm("sev_guest", (inblob) => {
      const r = report.slice();
      r.set(inblob, 0x50);
      return { outblob: r };
    });
    const paths = { tsmRoot: tsm.root, sysRoot: "/nonexistent" };
    const tcb = async (snpEvidenceFormat?: "coco" | "openanolis") => {
      const a = await selectAttester({ tee: "snp", paths, fs: tsm.fs, snpEvidenceFormat });
      // biome-ignore lint/suspicious/noExplicitAny: evidence JSON
      return ((await a.evidence(new Uint8Array(48))) as any).attestation_report.reported_tcb;
    };
    expect(await tcb()).toEqual({ fmc: 1, bootloader: 3, tee: 2, snp: 5, microcode: 0x61 });
    expect(await tcb("openanolis")).toEqual({
      bootloader: 1,
      tee: 3,
      _reserved: [2, 5, 0, 0],
      snp: 0,
      microcode: 0x61,
    });
  });
});
