/**
 * kbs: a resource from a Trustee key broker after remote attestation.
 * Upstream: cdh_type ("one-shot" | "daemon"), kbs_url, kbs_root_cert, cdh_socket, key_uri.
 * Documented: url, resource_path.
 */
import * as v from "valibot";
import { KBS_RETRY } from "../../net/retry.ts";
import { SNP_EVIDENCE_FORMATS, type SnpEvidenceFormat } from "../../providers/snp-format.ts";
import { compact, fieldPath, HttpUrl, NonEmpty, type ProviderTable, type Table } from "./common.ts";

export interface KbsConfig {
  type: "kbs";
  /** "one-shot": our own KBS client talks to `url`; "daemon": an existing CDH over ttrpc. */
  cdhType: "one-shot" | "daemon";
  /** Key broker base URL (required for one-shot). */
  url?: string;
  /** "repo/type/tag", no leading slash (from key_uri `kbs:///repo/type/tag` or resource_path). */
  resourcePath: string;
  /** PEM trust root for HTTPS to the broker; the system store when absent. */
  rootCert?: string;
  /** ttrpc socket of the CDH daemon (daemon mode). */
  cdhSocket?: string;
  /** Force a TEE type for the evidence (e.g. "tdx", "snp", "tpm", "sample"); auto-detect when absent. */
  tee?: string;
  /** Field names of SEV-SNP Turin evidence: "coco" (confidential-containers/trustee) or "openanolis". */
  snpEvidenceFormat?: SnpEvidenceFormat;
  /** Passport mode: the KBS that attests and issues the token presented to `url`. */
  attestationUrl?: string;
  /** Ephemeral TEE key the resource is encrypted to. */
  teeKeyAlgorithm: "ECDH-ES+A256KW" | "RSA-OAEP-256";
  /** Attempts per HTTP request (connection errors and 5xx are retried). */
  retryAttempts: number;
  /** Budget for the whole key fetch, retries and waits included. */
  retryTimeoutMs: number;
  /** One HTTP request's timeout. */
  requestTimeoutMs: number;
}

/** Defaults that outlast a key broker coming up 30 s after the guest: net/retry.ts KBS_RETRY. */
const KBS_RETRY_DEFAULTS = {
  attempts: KBS_RETRY.attempts,
  timeoutSecs: KBS_RETRY.totalTimeoutMs / 1000,
  requestTimeoutSecs: KBS_RETRY.requestTimeoutMs / 1000,
};

const DEFAULT_CDH_SOCKET = "unix:///run/confidential-containers/cdh.sock";

const KbsSchema = v.pipe(
  v.strictObject({
    cdh_type: v.optional(v.picklist(["one-shot", "daemon"]), "one-shot"),
    kbs_url: v.optional(HttpUrl),
    url: v.optional(HttpUrl),
    key_uri: v.optional(
      v.pipe(v.string(), v.regex(/^kbs:\/\/[^/]*\/[^/]+\/[^/]+/, 'must look like "kbs:///repo/type/tag"')),
    ),
    resource_path: v.optional(
      v.pipe(v.string(), v.regex(/^\/?[^/]+\/[^/]+/, 'must look like "repo/type/tag" or "/type/tag"')),
    ),
    kbs_root_cert: v.optional(
      v.pipe(v.string(), v.includes("-----BEGIN CERTIFICATE-----", "must be a PEM certificate")),
    ),
    cdh_socket: v.optional(NonEmpty),
    tee: v.optional(v.picklist(["tdx", "snp", "tpm", "sample"])),
    snp_evidence_format: v.optional(v.picklist(SNP_EVIDENCE_FORMATS)),
    attestation_url: v.optional(HttpUrl),
    tee_key_algorithm: v.optional(v.picklist(["ECDH-ES+A256KW", "RSA-OAEP-256"]), "ECDH-ES+A256KW"),
    retry_attempts: v.optional(
      v.pipe(v.number(), v.integer("must be an integer"), v.minValue(1), v.maxValue(1000)),
      KBS_RETRY_DEFAULTS.attempts,
    ),
    retry_timeout_secs: v.optional(
      v.pipe(v.number(), v.minValue(0.001, "must be positive"), v.maxValue(86400, "must be at most 86400 s")),
      KBS_RETRY_DEFAULTS.timeoutSecs,
    ),
    request_timeout_secs: v.optional(
      v.pipe(v.number(), v.minValue(0.001, "must be positive"), v.maxValue(3600, "must be at most 3600 s")),
      KBS_RETRY_DEFAULTS.requestTimeoutSecs,
    ),
  }),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const t = dataset.value;
    const both = (a: keyof typeof t, b: keyof typeof t) => {
      if (t[a] !== undefined && t[b] !== undefined) {
        addIssue({ message: `give either ${a} or ${b}, not both`, path: fieldPath(t, b) });
        return true;
      }
      return false;
    };
    if (both("kbs_url", "url") || both("key_uri", "resource_path")) return NEVER;
    const url = t.kbs_url ?? t.url;
    if (t.cdh_type === "one-shot" && url === undefined) {
      addIssue({ message: "kbs_url (or url) is required: the key broker's address, e.g. https://kbs:8080" });
      return NEVER;
    }
    if (t.cdh_type === "daemon" && (url !== undefined || t.kbs_root_cert !== undefined)) {
      const key = t.kbs_url !== undefined ? "kbs_url" : t.url !== undefined ? "url" : "kbs_root_cert";
      addIssue({
        message: `not used with cdh_type = "daemon" (the daemon has its own)`,
        path: fieldPath(t, key),
      });
      return NEVER;
    }
    const raw = t.key_uri ?? t.resource_path;
    if (raw === undefined) {
      addIssue({ message: 'key_uri (e.g. "kbs:///default/key/rootfs") or resource_path is required' });
      return NEVER;
    }
    const resourcePath = t.key_uri ? t.key_uri.replace(/^kbs:\/\/[^/]*\//, "") : raw.replace(/^\//, "");
    const out: KbsConfig = {
      type: "kbs",
      cdhType: t.cdh_type,
      resourcePath,
      teeKeyAlgorithm: t.tee_key_algorithm,
      retryAttempts: t.retry_attempts,
      retryTimeoutMs: Math.round(t.retry_timeout_secs * 1000),
      requestTimeoutMs: Math.round(t.request_timeout_secs * 1000),
    };
    if (t.attestation_url !== undefined) out.attestationUrl = t.attestation_url.replace(/\/+$/, "");
    if (url !== undefined) out.url = url.replace(/\/+$/, "");
    if (t.kbs_root_cert !== undefined) out.rootCert = t.kbs_root_cert;
    if (t.cdh_type === "daemon") out.cdhSocket = t.cdh_socket ?? DEFAULT_CDH_SOCKET;
    if (t.tee !== undefined) out.tee = t.tee;
    if (t.snp_evidence_format !== undefined) out.snpEvidenceFormat = t.snp_evidence_format;
    return out;
  }),
);

function kbsToToml(c: KbsConfig): Table {
  return compact({
    cdh_type: c.cdhType,
    kbs_url: c.url,
    kbs_root_cert: c.rootCert,
    cdh_socket: c.cdhSocket,
    key_uri: `kbs:///${c.resourcePath}`,
    tee: c.tee,
    snp_evidence_format: c.snpEvidenceFormat,
    attestation_url: c.attestationUrl,
    tee_key_algorithm: c.teeKeyAlgorithm === "ECDH-ES+A256KW" ? undefined : c.teeKeyAlgorithm,
    retry_attempts: c.retryAttempts === KBS_RETRY_DEFAULTS.attempts ? undefined : c.retryAttempts,
    retry_timeout_secs:
      c.retryTimeoutMs === KBS_RETRY_DEFAULTS.timeoutSecs * 1000 ? undefined : c.retryTimeoutMs / 1000,
    request_timeout_secs:
      c.requestTimeoutMs === KBS_RETRY_DEFAULTS.requestTimeoutSecs * 1000
        ? undefined
        : c.requestTimeoutMs / 1000,
  });
}

export const kbs: ProviderTable<KbsConfig> = { type: "kbs", schema: KbsSchema, toToml: kbsToToml };
