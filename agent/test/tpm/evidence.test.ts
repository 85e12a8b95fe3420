/**
 * TPM evidence against a real swtpm: the quote verifies with tpm2_checkquote (independent), the
 * nonce binding holds (and a different digest is rejected), the PCRs are the TPM's, the EK
 * certificate is picked up when the TPM has one, and the AK is stable across calls.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { createHash, X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createTpmAttester, reportData, type TpmEvidence, tpmEvidence } from "../../src/attest/tpm.ts";
import { ESYS_TR, withTpm } from "../../src/tpm/esys.ts";
import { parseQuoteAttest } from "../../src/tpm/marshal.ts";
import { akTemplate, parsePublic, rsaPublicKey } from "../../src/tpm/public.ts";
import { verifyTpmEvidence } from "../../testkit/checkquote.ts";
import { hasSwtpm, tpm2Tool } from "../../testkit/swtpm.ts";
import { swtpmForSuite } from "../../testkit/swtpm-suite.ts";

if (!hasSwtpm) console.warn("skipping TPM evidence tests: swtpm or tpm2-tools not installed");

const digest = createHash("sha384").update("runtime data").digest();

describe.skipIf(!hasSwtpm)("TPM evidence (swtpm, all banks allocated, no EK cert)", () => {
  const suite = swtpmForSuite("tpm-ev-");
  let evidence: TpmEvidence;
  beforeAll(async () => {
    writeFileSync(join(suite.dir, "log"), Buffer.from("not really an event log"));
    await withTpm(suite.tpm.tcti, (esys) => esys.pcrExtend(16, "sha256", new Uint8Array(32).fill(0xab)));
    evidence = await tpmEvidence(digest, { tcti: suite.tpm.tcti, eventLogPath: join(suite.dir, "log") });
  });

  test("tpm2_checkquote accepts every quote against the nonce (first 32 bytes of the digest)", async () => {
    expect((await verifyTpmEvidence(evidence, digest)).banks.sort()).toEqual(["sha1", "sha256"]);
  });

  test("a different runtime-data digest is rejected by tpm2_checkquote", async () => {
    const other = createHash("sha384").update("another session").digest();
    await expect(verifyTpmEvidence(evidence, other)).rejects.toThrow(/tpm2_checkquote rejected/);
  });

  test("tampered PCR values are rejected", async () => {
    const pcrs = [...evidence.tpm_quote.pcrs];
    pcrs[16] = "00".repeat(32);
    await expect(
      verifyTpmEvidence({ ...evidence, tpm_quote: { ...evidence.tpm_quote, pcrs } }, digest),
    ).rejects.toThrow(/rejected the sha256 quote/);
  });

  test("the quote carries the 32-byte report data and the TPM's PCR values", async () => {
    const attest = parseQuoteAttest(Buffer.from(evidence.quote.SHA256!.attest_body, "base64"));
    expect(Buffer.from(attest.extraData).equals(Buffer.from(reportData(digest)))).toBe(true);
    expect(Buffer.from(attest.extraData).equals(digest.subarray(0, 32))).toBe(true);
    expect(attest.pcrSelect).toEqual([{ bank: "sha256", pcrs: Array.from({ length: 24 }, (_, i) => i) }]);
    const pcr16 = createHash("sha256").update(Buffer.alloc(32)).update(Buffer.alloc(32, 0xab)).digest("hex");
    expect(evidence.tpm_quote.pcrs[16]).toBe(pcr16);
    expect(evidence.quote.SHA256!.pcrs).toEqual(evidence.tpm_quote.pcrs);
    expect(evidence.tpm_quote.message).toBe(evidence.quote.SHA256!.attest_body);
  });

  test("shape: both trustee formats, event log included, no EK certificate on a bare swtpm", () => {
    expect(evidence.ek_cert).toBeNull();
    expect(evidence.keylime_agent_uuid).toBeNull();
    expect(evidence.aa_eventlog).toBeNull();
    expect(Buffer.from(evidence.eventlog!, "base64").toString()).toBe("not really an event log");
    expect(evidence.ak_pubkey).toStartWith("-----BEGIN PUBLIC KEY-----");
    expect(evidence.tpm_quote.pcrs).toHaveLength(24);
    expect(evidence.quote.SHA1!.pcrs[0]).toHaveLength(40);
  });

  test("the AK is the same on every call (a primary derived from the endorsement seed)", async () => {
    const again = await createTpmAttester({ tcti: suite.tpm.tcti, eventLogPath: "/nonexistent" }).evidence(
      digest,
    );
    expect((again as TpmEvidence).ak_public).toBe(evidence.ak_public);
    expect((again as TpmEvidence).eventlog).toBeNull();
  });
});

describe.skipIf(!hasSwtpm)("TPM evidence (swtpm_setup: EK certificate, SHA-256 bank only)", () => {
  const suite = swtpmForSuite("tpm-ek-", { ekCert: true });

  test("the EK certificate from NV is included as PEM and the SHA-256 quote verifies", async () => {
    const evidence = await tpmEvidence(digest, { tcti: suite.tpm.tcti, eventLogPath: "/nonexistent" });
    expect(evidence.ek_cert).toStartWith("-----BEGIN CERTIFICATE-----");
    const cert = new X509Certificate(evidence.ek_cert!);
    expect(cert.publicKey.asymmetricKeyType).toBe("rsa");
    expect(Object.keys(evidence.quote)).toEqual(["SHA256"]);
    expect((await verifyTpmEvidence(evidence, digest)).banks).toEqual(["sha256"]);
  });
});

describe.skipIf(!hasSwtpm)("TPM evidence with a provisioned AK at 0x81010002 (upstream's handle)", () => {
  const suite = swtpmForSuite("tpm-ak-");
  const tool = (args: string[]) => tpm2Tool(suite.tpm, suite.dir, args);

  test("the persistent AK signs the quotes (its public key is the evidence's)", async () => {
    // Another template than ours (userwithauth|restricted|sign, unique from -u), made persistent.
    writeFileSync(join(suite.dir, "unique"), Buffer.concat([Buffer.from([1, 0]), Buffer.alloc(256, 7)]));
    tool([
      "tpm2_createprimary",
      "-C",
      "e",
      "-G",
      "rsa2048:rsassa-sha256:null",
      "-a",
      "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign",
      "-u",
      "unique",
      "-c",
      "ak.ctx",
    ]);
    tool(["tpm2_evictcontrol", "-C", "o", "-c", "ak.ctx", "0x81010002"]);
    tool(["tpm2_flushcontext", "-t"]);
    tool(["tpm2_readpublic", "-c", "0x81010002", "-f", "pem", "-o", "ak.pem"]);
    const evidence = await tpmEvidence(digest, { tcti: suite.tpm.tcti, eventLogPath: "/nonexistent" });
    expect(evidence.ak_pubkey.trim()).toBe(readFileSync(join(suite.dir, "ak.pem"), "utf8").trim());
    await verifyTpmEvidence(evidence, digest);
    const fresh = await withTpm(suite.tpm.tcti, (esys) =>
      rsaPublicKey(parsePublic(esys.createPrimary(ESYS_TR.RH_ENDORSEMENT, akTemplate()).publicArea)),
    );
    expect(fresh.export({ type: "spki", format: "pem" }).toString().trim()).not.toBe(
      evidence.ak_pubkey.trim(),
    );
  });
});

describe("TPM evidence without a TPM", () => {
  test("a missing TPM device is named in the error", async () => {
    await expect(tpmEvidence(digest, { tcti: "device:/dev/nonexistent-tpm" })).rejects.toThrow(
      /no TPM found: the TPM device \/dev\/nonexistent-tpm does not exist/,
    );
  });
});
