/**
 * Independent check of TPM evidence for the test key broker and the tests: every quote in it
 * is verified by tpm2-tools' `tpm2_checkquote` (OpenSSL, not our code) against the AK, the PCR
 * values it carries, and the expected nonce (first 32 bytes of the runtime-data digest, as both
 * trustee verifiers compare).
 *
 *   const { banks } = await verifyTpmEvidence(evidence, digest); // throws Error with the reason
 */
import { createPublicKey } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const TPM2_ALG_RSASSA = 0x0014;
const TPM2_ALG_SHA256 = 0x000b;
const BANK_ALG = { sha1: 0x0004, sha256: 0x000b } as const;

interface QuoteFields {
  bank: "sha1" | "sha256";
  message: Buffer;
  /** Marshalled TPMT_SIGNATURE. */
  signature: Buffer;
  pcrs: string[];
}

function b64(value: unknown, field: string): Buffer {
  if (typeof value !== "string" || value.length === 0) throw new Error(`TPM evidence: ${field} is missing`);
  return Buffer.from(value, "base64");
}

/** TPMT_SIGNATURE around a raw RSASSA-SHA256 signature (the openanolis format sends it raw). */
function wrapRsaSignature(raw: Buffer): Buffer {
  const head = Buffer.alloc(6);
  head.writeUInt16BE(TPM2_ALG_RSASSA, 0);
  head.writeUInt16BE(TPM2_ALG_SHA256, 2);
  head.writeUInt16BE(raw.length, 4);
  return Buffer.concat([head, raw]);
}

/**
 * PCR values in tpm2-tools' "serialized" PCR file (what `tpm2_quote -o` writes): the C structs
 * TPML_PCR_SELECTION (132 bytes), a UINT32 count, then that many TPML_DIGEST (532 bytes, 8
 * digests each), little-endian. tpm2-tools 5.4's checkquote mishandles the plain "values" file.
 */
function serializedPcrs(bank: "sha1" | "sha256", pcrs: string[]): Buffer {
  if (pcrs.length !== 24)
    throw new Error(`TPM evidence: ${bank} quote lists ${pcrs.length} PCRs, expected 24`);
  const sel = Buffer.alloc(132);
  sel.writeUInt32LE(1, 0);
  sel.writeUInt16LE(BANK_ALG[bank], 4);
  sel.writeUInt8(3, 6);
  sel.fill(0xff, 7, 10);
  const groups: Buffer[] = [];
  for (let g = 0; g < 3; g++) {
    const list = Buffer.alloc(532);
    list.writeUInt32LE(8, 0);
    for (let i = 0; i < 8; i++) {
      const value = Buffer.from(pcrs[g * 8 + i]!, "hex");
      list.writeUInt16LE(value.length, 4 + i * 66);
      value.copy(list, 6 + i * 66);
    }
    groups.push(list);
  }
  const count = Buffer.alloc(4);
  count.writeUInt32LE(groups.length);
  return Buffer.concat([sel, count, ...groups]);
}

async function checkquote(
  dir: string,
  akPem: string,
  q: QuoteFields,
  nonce: Buffer,
  n: number,
): Promise<void> {
  const file = (name: string, data: string | Buffer) => {
    const path = join(dir, `${n}-${name}`);
    writeFileSync(path, data);
    return path;
  };
  for (const p of q.pcrs) {
    if (!/^[0-9a-f]+$/.test(p)) throw new Error(`TPM evidence: PCR value "${p}" is not hex`);
  }
  const proc = Bun.spawn(
    [
      "tpm2_checkquote",
      "-u",
      file("ak.pem", akPem),
      "-g",
      "sha256",
      "-m",
      file("msg", q.message),
      "-s",
      file("sig", q.signature),
      "-f",
      file("pcrs", serializedPcrs(q.bank, q.pcrs)),
      "-q",
      nonce.toString("hex"),
    ],
    { stdout: "pipe", stderr: "pipe" },
  );
  const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  if (code !== 0) {
    throw new Error(
      `tpm2_checkquote rejected the ${q.bank} quote (exit ${code}): ${stderr.trim().split("\n").slice(-3).join(" ")}`,
    );
  }
}

/**
 * Verify TPM evidence as built by agent/src/attest/tpm.ts against the runtime-data digest.
 * Returns the banks whose quotes were verified; throws an Error naming what failed.
 */
export async function verifyTpmEvidence(evidence: unknown, digest: Uint8Array): Promise<{ banks: string[] }> {
  const ev = evidence as Record<string, unknown>;
  if (typeof ev.ak_pubkey !== "string") throw new Error("TPM evidence: ak_pubkey is missing");
  const akPem = ev.ak_pubkey;
  const akDer = createPublicKey(akPem).export({ type: "spki", format: "der" });
  if (!b64(ev.ak_public, "ak_public").equals(akDer))
    throw new Error("TPM evidence: ak_public and ak_pubkey differ");

  const nonce = Buffer.alloc(32);
  nonce.set(digest.subarray(0, 32));

  const quotes: QuoteFields[] = [];
  const up = ev.tpm_quote as Record<string, unknown> | undefined;
  if (!up || !Array.isArray(up.pcrs)) throw new Error("TPM evidence: tpm_quote is missing");
  quotes.push({
    bank: "sha256",
    message: b64(up.message, "tpm_quote.message"),
    signature: b64(up.signature, "tpm_quote.signature"),
    pcrs: up.pcrs as string[],
  });
  const ot = (ev.quote ?? {}) as Record<string, Record<string, unknown>>;
  if (!ot.SHA256) throw new Error("TPM evidence: quote.SHA256 is missing");
  for (const [name, q] of Object.entries(ot)) {
    const bank = name === "SHA1" ? "sha1" : name === "SHA256" ? "sha256" : undefined;
    if (!bank || !Array.isArray(q.pcrs))
      throw new Error(`TPM evidence: quote.${name} is not a SHA1/SHA256 quote`);
    quotes.push({
      bank,
      message: b64(q.attest_body, `quote.${name}.attest_body`),
      signature: wrapRsaSignature(b64(q.attest_sig, `quote.${name}.attest_sig`)),
      pcrs: q.pcrs as string[],
    });
  }

  const dir = mkdtempSync(join(tmpdir(), "checkquote-"));
  try {
    let n = 0;
    for (const q of quotes) await checkquote(dir, akPem, q, nonce, n++);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { banks: Object.keys(ot).map((b) => b.toLowerCase()) };
}
