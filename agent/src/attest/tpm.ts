/**
 * TPM evidence (`tee = "tpm"`): a quote over all 24 PCRs of each allocated SHA-1/SHA-256 bank,
 * signed by an RSA attestation key in the endorsement hierarchy, with the runtime-data digest as
 * qualifying data.
 *
 * Trustee has two TPM evidence formats (spec/protocols.md §2.5), and serde ignores unknown
 * fields in both, so one object carries both over the same quote:
 * - openanolis/trustee (what cryptpilot deployments run; inclavare guest-components' attester):
 *   ek_cert, ak_pubkey (PEM), quote.{SHA1,SHA256}.{attest_body, attest_sig (raw), pcrs},
 *   eventlog, aa_eventlog (the AAEL of measure/, whose PCR the quote covers), keylime_agent_uuid.
 * - upstream confidential-containers/trustee: tpm_quote.{message, signature (TPMT_SIGNATURE),
 *   pcrs (SHA-256)}, ak_public (base64 DER).
 * Both verifiers compare the first 32 bytes of the digest with the quote's extraData.
 */
import { createHash, X509Certificate } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { FdeError } from "../errors.ts";
import { log } from "../log.ts";
import { RECORDS_PATH, readRecords, standaloneLog } from "../measure/records.ts";
import { TPM_REGISTER } from "../measure/registers.ts";
import { ESYS_TR, type Esys, withTpm } from "../tpm/esys.ts";
import {
  hex,
  type PcrBank,
  type PcrSelection,
  parseQuoteAttest,
  parseRsaSignature,
  TPM2_ALG,
} from "../tpm/marshal.ts";
import { akTemplate, parsePublic, rsaPublicKey, TPMA_OBJECT } from "../tpm/public.ts";
import { resolveTcti } from "../tpm/tcti.ts";
import type { Attester, HostPaths } from "./types.ts";

/** Both verifiers use 32 bytes of report data (truncated or zero-padded). */
export const TPM_REPORT_DATA_SIZE = 32;

/** Where guest-components' TPM attester keeps its AK. */
const PERSISTENT_AK = 0x81010002;

/** TCG EK Credential Profile NV indices of the EK certificate: RSA 2048, then ECC P-256. */
const EK_CERT_INDICES = [0x01c00002, 0x01c0000a];

const EVENTLOG_PATH = "/sys/kernel/security/tpm0/binary_bios_measurements";

const ALL_PCRS = Array.from({ length: 24 }, (_, i) => i);

export interface TpmQuoteJson {
  attest_body: string;
  attest_sig: string;
  pcrs: string[];
}

export interface TpmEvidence {
  ek_cert: string | null;
  ak_pubkey: string;
  keylime_agent_uuid: null;
  quote: Partial<Record<"SHA1" | "SHA256", TpmQuoteJson>>;
  eventlog: string | null;
  /** The AAEL (measure/) as a TCG2 log, replayed into the SHA-256 PCRs; null when nothing was measured. */
  aa_eventlog: string | null;
  tpm_quote: { signature: string; message: string; pcrs: string[] };
  ak_public: string;
}

export interface TpmAttesterOptions {
  /** TCTI string; default from TPM2TOOLS_TCTI/TCTI, else device:/dev/tpmrm0. */
  tcti?: string;
  /** The firmware event log to include; default the kernel's securityfs file. */
  eventLogPath?: string;
  /** The AAEL records of runtime measurements (default measure/'s RECORDS_PATH). */
  aaelPath?: string;
}

/** A TPM is there when the kernel exposes a TPM device (guest-components' detection). */
export function detectTpm(paths: HostPaths): boolean {
  return existsSync(`${paths.sysRoot}/dev/tpmrm0`) || existsSync(`${paths.sysRoot}/dev/tpm0`);
}

export function reportData(digest: Uint8Array): Uint8Array {
  const out = new Uint8Array(TPM_REPORT_DATA_SIZE);
  out.set(digest.subarray(0, TPM_REPORT_DATA_SIZE));
  return out;
}

/** An NV index may be larger than the certificate it holds: keep the outer DER SEQUENCE only. */
function derLength(der: Uint8Array): number {
  if (der[0] !== 0x30) throw new FdeError("the EK certificate in TPM NV is not DER");
  const first = der[1]!;
  if (first < 0x80) return 2 + first;
  const n = first & 0x7f;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + der[2 + i]!;
  return 2 + n + len;
}

function ekCertPem(esys: Esys): string | null {
  for (const index of EK_CERT_INDICES) {
    const raw = esys.nvReadOwner(index);
    if (!raw) continue;
    try {
      return new X509Certificate(raw.subarray(0, derLength(raw))).toString();
    } catch (err) {
      log.warn(
        `TPM NV index 0x${index.toString(16)} does not hold a readable EK certificate: ${(err as Error).message}`,
      );
    }
  }
  return null;
}

/**
 * The provisioned AK at upstream's persistent handle when it is an RSASSA-SHA256 restricted
 * signing key (a real TPM creates an RSA primary in seconds); otherwise the endorsement-hierarchy
 * primary from akTemplate(), created for this quote.
 */
function attestationKey(esys: Esys): { handle: number; publicArea: Uint8Array; transient: boolean } {
  const persistent = esys.fromTpmHandle(PERSISTENT_AK);
  if (persistent !== undefined) {
    const publicArea = esys.readPublic(persistent);
    const area = parsePublic(publicArea);
    const signing = TPMA_OBJECT.restricted | TPMA_OBJECT.sign;
    if (
      area.rsa?.scheme === TPM2_ALG.RSASSA &&
      area.rsa.schemeHash === TPM2_ALG.SHA256 &&
      (area.attributes & signing) === signing
    ) {
      return { handle: persistent, publicArea, transient: false };
    }
    log.warn(
      `TPM handle 0x${PERSISTENT_AK.toString(16)} is not an RSASSA-SHA256 attestation key; creating one`,
    );
  }
  return { ...esys.createPrimary(ESYS_TR.RH_ENDORSEMENT, akTemplate()), transient: true };
}

/**
 * Quote one bank, then read its PCRs; repeat if a PCR was extended in between (the values must
 * hash to the quote's pcrDigest or every verifier rejects them).
 */
function quoteBank(esys: Esys, ak: number, data: Uint8Array, bank: PcrBank) {
  const selection: PcrSelection[] = [{ bank, pcrs: ALL_PCRS }];
  for (let attempt = 0; attempt < 3; attempt++) {
    const quote = esys.quote(ak, data, selection);
    const values = esys.pcrRead(selection);
    const list = ALL_PCRS.map((p) => values.get(`${bank}:${p}`)!);
    const digest = createHash("sha256").update(Buffer.concat(list)).digest();
    if (Buffer.from(parseQuoteAttest(quote.attest).pcrDigest).equals(digest)) {
      return { ...quote, pcrs: list.map((v) => hex(v)) };
    }
  }
  throw new FdeError(`TPM PCRs (${bank}) keep changing while being quoted`);
}

/** Build the evidence for `digest` (the runtime-data hash; only its first 32 bytes are used). */
export async function tpmEvidence(
  digest: Uint8Array,
  options: TpmAttesterOptions = {},
): Promise<TpmEvidence> {
  const data = reportData(digest);
  // Read before quoting: an extend in between makes the log and the quote disagree, which the
  // verifier rejects, rather than sending a record the quote does not cover unnoticed.
  const aael = readRecords(options.aaelPath ?? RECORDS_PATH);
  const result = await withTpm(resolveTcti(options.tcti), (esys) => {
    const banks = esys
      .pcrBanks()
      .map((s) => s.bank)
      .filter((b): b is "sha1" | "sha256" => b === "sha1" || b === "sha256");
    if (!banks.includes("sha256"))
      throw new FdeError("the TPM has no SHA-256 PCR bank, which trustee's verifier needs");
    const ak = attestationKey(esys);
    try {
      const quotes = banks.map((bank) => ({ bank, ...quoteBank(esys, ak.handle, data, bank) }));
      return { quotes, akKey: rsaPublicKey(parsePublic(ak.publicArea)), ekCert: ekCertPem(esys) };
    } finally {
      if (ak.transient) esys.flush(ak.handle);
    }
  });
  const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");
  const quote: TpmEvidence["quote"] = {};
  for (const q of result.quotes) {
    quote[q.bank === "sha1" ? "SHA1" : "SHA256"] = {
      attest_body: b64(q.attest),
      attest_sig: b64(parseRsaSignature(q.signature).signature),
      pcrs: q.pcrs,
    };
  }
  const sha256 = result.quotes.find((q) => q.bank === "sha256")!;
  const logPath = options.eventLogPath ?? EVENTLOG_PATH;
  let eventlog: string | null = null;
  try {
    eventlog = readFileSync(logPath).toString("base64");
  } catch (err) {
    log.debug(`tpm: no event log at ${logPath}: ${(err as Error).message}`);
  }
  return {
    ek_cert: result.ekCert,
    ak_pubkey: result.akKey.export({ type: "spki", format: "pem" }).toString(),
    keylime_agent_uuid: null,
    quote,
    eventlog,
    aa_eventlog: aael ? b64(standaloneLog(aael, [TPM_REGISTER.alg])) : null,
    tpm_quote: { signature: b64(sha256.signature), message: b64(sha256.attest), pcrs: sha256.pcrs },
    ak_public: b64(result.akKey.export({ type: "spki", format: "der" })),
  };
}

export function createTpmAttester(options: TpmAttesterOptions = {}): Attester {
  return { tee: "tpm", evidence: (digest) => tpmEvidence(digest, options) };
}
