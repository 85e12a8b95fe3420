/**
 * Key provider tables (`[<volume>.encrypt.<provider>]`). Each accepts upstream cryptpilot's field
 * names and the names used in the key-provider documentation, and normalises them into one
 * camelCase shape per provider. Owners of a provider extend ITS section below (schema, normalised
 * type, toToml) and keep the three in step; docs/key-providers.md documents the result.
 */
import * as v from "valibot";
import { DEFAULT_RETRY as KBS_DEFAULT_RETRY } from "../providers/kbs-defaults.ts";
import { SNP_EVIDENCE_FORMATS, type SnpEvidenceFormat } from "../providers/snp-format.ts";
import { describeIssue, fieldsAt } from "./issues.ts";

/** Path item for issues raised inside rawTransform, so messages name the field and its line. */
export function fieldPath(input: Record<string, unknown>, key: string): [v.ObjectPathItem] {
  return [{ type: "object", origin: "value", input, key, value: input[key] }];
}

type Table = Record<string, unknown>;

/** Drop undefined values: TOML has no null. */
function compact(table: Table): Table {
  return Object.fromEntries(Object.entries(table).filter(([, value]) => value !== undefined));
}

const NonEmpty = v.pipe(v.string(), v.minLength(1, "must not be empty"));
const HttpUrl = v.pipe(
  v.string(),
  v.regex(/^https?:\/\/[^/\s]+/, 'must be an http:// or https:// URL, e.g. "https://kbs.example.com:8080"'),
);
const Args = v.optional(v.array(v.string()), []);
/** Seconds, as a TOML integer or float. */
const TimeoutSecs = v.optional(
  v.pipe(v.number(), v.minValue(0.001, "must be positive"), v.maxValue(3600, "must be at most 3600 s")),
  30,
);

// ---------------------------------------------------------------------------------------------
// otp: a fresh random key per call. Upstream: `{}`.

export interface OtpConfig {
  type: "otp";
}

const OtpSchema = v.pipe(
  v.strictObject({}),
  v.transform((): OtpConfig => ({ type: "otp" })),
);

const otpToToml = (_c: OtpConfig): Table => ({});

// ---------------------------------------------------------------------------------------------
// exec: stdout of a command (no shell) is the key. Upstream: command, args. Ours adds timeout_secs.

export interface ExecConfig {
  type: "exec";
  command: string;
  args: string[];
  timeoutMs: number;
}

const ExecSchema = v.pipe(
  v.strictObject({ command: NonEmpty, args: Args, timeout_secs: TimeoutSecs }),
  v.transform(
    (t): ExecConfig => ({
      type: "exec",
      command: t.command,
      args: t.args,
      timeoutMs: Math.round(t.timeout_secs * 1000),
    }),
  ),
);

function execToToml(c: ExecConfig): Table {
  return {
    command: c.command,
    args: c.args,
    ...(c.timeoutMs === 30_000 ? {} : { timeout_secs: c.timeoutMs / 1000 }),
  };
}

// ---------------------------------------------------------------------------------------------
// kbs: a resource from a Trustee key broker after remote attestation.
// Upstream: cdh_type ("one-shot" | "daemon"), kbs_url, kbs_root_cert, cdh_socket, key_uri.
// Documented: url, resource_path.

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

/** Defaults that outlast a key broker coming up 30 s after the guest: providers/kbs-defaults.ts DEFAULT_RETRY. */
const KBS_RETRY_DEFAULTS = {
  attempts: KBS_DEFAULT_RETRY.attempts,
  timeoutSecs: KBS_DEFAULT_RETRY.totalTimeoutMs / 1000,
  requestTimeoutSecs: KBS_DEFAULT_RETRY.requestTimeoutMs / 1000,
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

// ---------------------------------------------------------------------------------------------
// kms: a secret from Alibaba Cloud KMS.
// Upstream: kms_instance_id, secret_name, and either client_key + client_key_password + kms_cert_pem
// or auth_mode = "ecs_ram_role" with optional ecs_ram_role_name, region_id.
// Documented: kms_instance_id, client_key_id, client_key_password_from_kms.
// Ours: client_key / kms_cert_pem may be file paths, client_key_password_file, and endpoint /
// imds_endpoint to reach other hosts (test servers, proxies); see providers/kms.ts.

export interface KmsConfig {
  type: "kms";
  kmsInstanceId: string;
  secretName?: string;
  authMode: "client_key" | "ecs_ram_role";
  /** Content of clientKey_*.json (upstream). */
  clientKey?: string;
  clientKeyPassword?: string;
  /** PEM CA of the KMS instance endpoint. */
  kmsCertPem?: string;
  /** Documented form. */
  clientKeyId?: string;
  clientKeyPasswordFromKms?: string;
  ecsRamRoleName?: string;
  regionId?: string;
  /** Path of a file holding the client key password (alternative to clientKeyPassword). */
  clientKeyPasswordFile?: string;
  /** Overrides the instance endpoint (client_key) or kms.<region>.aliyuncs.com (ecs_ram_role). */
  endpoint?: string;
  /** Overrides the ECS metadata service, http://100.100.100.200. */
  imdsEndpoint?: string;
}

const KmsSchema = v.pipe(
  v.strictObject({
    kms_instance_id: NonEmpty,
    secret_name: v.optional(NonEmpty),
    auth_mode: v.optional(v.picklist(["client_key", "ecs_ram_role"]), "client_key"),
    client_key: v.optional(NonEmpty),
    client_key_password: v.optional(NonEmpty),
    kms_cert_pem: v.optional(NonEmpty),
    client_key_id: v.optional(NonEmpty),
    client_key_password_from_kms: v.optional(NonEmpty),
    ecs_ram_role_name: v.optional(NonEmpty),
    region_id: v.optional(NonEmpty),
    client_key_password_file: v.optional(NonEmpty),
    endpoint: v.optional(HttpUrl),
    imds_endpoint: v.optional(HttpUrl),
  }),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const t = dataset.value;
    const clientKeyFields = [
      "client_key",
      "client_key_password",
      "kms_cert_pem",
      "client_key_id",
      "client_key_password_from_kms",
      "client_key_password_file",
    ] as const;
    if (t.auth_mode === "ecs_ram_role") {
      const stray = clientKeyFields.find((k) => t[k] !== undefined);
      if (stray) {
        addIssue({ message: `not used with auth_mode = "ecs_ram_role"`, path: fieldPath(t, stray) });
        return NEVER;
      }
      if (t.secret_name === undefined) {
        addIssue({ message: "secret_name is required: the KMS secret holding the volume key" });
        return NEVER;
      }
    } else {
      // With client_key_id (documented form) the downloaded files may sit in the config directory
      // under their console names; providers/kms.ts explains what is still missing when it is built.
      const upstream = ["client_key", "client_key_password", "kms_cert_pem", "secret_name"] as const;
      const missing =
        t.client_key_id !== undefined
          ? []
          : upstream.filter(
              (k) =>
                t[k] === undefined &&
                !(k === "client_key_password" && t.client_key_password_file !== undefined),
            );
      if (missing.length > 0) {
        addIssue({
          message:
            `client-key authentication needs ${missing.join(", ")} ` +
            '(or set auth_mode = "ecs_ram_role" to use the instance RAM role)',
        });
        return NEVER;
      }
      if (t.ecs_ram_role_name !== undefined) {
        addIssue({
          message: 'only used with auth_mode = "ecs_ram_role"',
          path: fieldPath(t, "ecs_ram_role_name"),
        });
        return NEVER;
      }
    }
    const out: KmsConfig = { type: "kms", kmsInstanceId: t.kms_instance_id, authMode: t.auth_mode };
    if (t.secret_name !== undefined) out.secretName = t.secret_name;
    if (t.client_key !== undefined) out.clientKey = t.client_key;
    if (t.client_key_password !== undefined) out.clientKeyPassword = t.client_key_password;
    if (t.kms_cert_pem !== undefined) out.kmsCertPem = t.kms_cert_pem;
    if (t.client_key_id !== undefined) out.clientKeyId = t.client_key_id;
    if (t.client_key_password_from_kms !== undefined)
      out.clientKeyPasswordFromKms = t.client_key_password_from_kms;
    if (t.ecs_ram_role_name !== undefined) out.ecsRamRoleName = t.ecs_ram_role_name;
    if (t.region_id !== undefined) out.regionId = t.region_id;
    if (t.client_key_password_file !== undefined) out.clientKeyPasswordFile = t.client_key_password_file;
    if (t.endpoint !== undefined) out.endpoint = t.endpoint;
    if (t.imds_endpoint !== undefined) out.imdsEndpoint = t.imds_endpoint;
    return out;
  }),
);

function kmsToToml(c: KmsConfig): Table {
  return compact({
    kms_instance_id: c.kmsInstanceId,
    secret_name: c.secretName,
    auth_mode: c.authMode === "ecs_ram_role" ? c.authMode : undefined,
    client_key: c.clientKey,
    client_key_password: c.clientKeyPassword,
    kms_cert_pem: c.kmsCertPem,
    client_key_id: c.clientKeyId,
    client_key_password_from_kms: c.clientKeyPasswordFromKms,
    ecs_ram_role_name: c.ecsRamRoleName,
    region_id: c.regionId,
    client_key_password_file: c.clientKeyPasswordFile,
    endpoint: c.endpoint,
    imds_endpoint: c.imdsEndpoint,
  });
}

// ---------------------------------------------------------------------------------------------
// oidc: a KMS secret fetched with an OIDC token from a local command.
// Upstream: command, args, key_id, [kms] type = "aliyun", oidc_provider_arn, role_arn, region_id.
// Documented: kms_instance_id, client_key_password_from_kms, [oidc_token_from_exec] command/args.
// Ours: [kms] sts_endpoint / endpoint to reach other hosts (test servers, proxies).

export interface OidcConfig {
  type: "oidc";
  /** The program that prints the OIDC token (run without a shell). */
  tokenCommand: { command: string; args: string[]; timeoutMs: number };
  /** Secret name in KMS (upstream `key_id`). */
  keyId?: string;
  aliyun?: {
    oidcProviderArn: string;
    roleArn: string;
    regionId: string;
    /** Overrides sts.<region>.aliyuncs.com. */
    stsEndpoint?: string;
    /** Overrides kms.<region>.aliyuncs.com. */
    endpoint?: string;
  };
  kmsInstanceId?: string;
  clientKeyPasswordFromKms?: string;
}

const OidcSchema = v.pipe(
  v.strictObject({
    command: v.optional(NonEmpty),
    args: v.optional(v.array(v.string())),
    timeout_secs: TimeoutSecs,
    key_id: v.optional(NonEmpty),
    kms: v.optional(
      v.strictObject({
        type: v.picklist(["aliyun"]),
        oidc_provider_arn: NonEmpty,
        role_arn: NonEmpty,
        region_id: NonEmpty,
        sts_endpoint: v.optional(HttpUrl),
        endpoint: v.optional(HttpUrl),
      }),
    ),
    kms_instance_id: v.optional(NonEmpty),
    client_key_password_from_kms: v.optional(NonEmpty),
    oidc_token_from_exec: v.optional(v.strictObject({ command: NonEmpty, args: Args })),
  }),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    const t = dataset.value;
    if (t.command !== undefined && t.oidc_token_from_exec !== undefined) {
      addIssue({
        message: "give either command/args or [oidc_token_from_exec], not both",
        path: fieldPath(t, "command"),
      });
      return NEVER;
    }
    const exec =
      t.oidc_token_from_exec ??
      (t.command === undefined ? undefined : { command: t.command, args: t.args ?? [] });
    if (exec === undefined) {
      addIssue({ message: "the token command is required: command/args or [oidc_token_from_exec]" });
      return NEVER;
    }
    if (t.args !== undefined && t.command === undefined) {
      addIssue({ message: "args without command", path: fieldPath(t, "args") });
      return NEVER;
    }
    if (t.kms_instance_id === undefined && (t.key_id === undefined || t.kms === undefined)) {
      addIssue({
        message: `needs key_id and a [kms] table (type = "aliyun", oidc_provider_arn, role_arn, region_id), or kms_instance_id`,
      });
      return NEVER;
    }
    const out: OidcConfig = {
      type: "oidc",
      tokenCommand: { command: exec.command, args: exec.args, timeoutMs: Math.round(t.timeout_secs * 1000) },
    };
    if (t.key_id !== undefined) out.keyId = t.key_id;
    if (t.kms !== undefined) {
      out.aliyun = {
        oidcProviderArn: t.kms.oidc_provider_arn,
        roleArn: t.kms.role_arn,
        regionId: t.kms.region_id,
      };
      if (t.kms.sts_endpoint !== undefined) out.aliyun.stsEndpoint = t.kms.sts_endpoint;
      if (t.kms.endpoint !== undefined) out.aliyun.endpoint = t.kms.endpoint;
    }
    if (t.kms_instance_id !== undefined) out.kmsInstanceId = t.kms_instance_id;
    if (t.client_key_password_from_kms !== undefined)
      out.clientKeyPasswordFromKms = t.client_key_password_from_kms;
    return out;
  }),
);

function oidcToToml(c: OidcConfig): Table {
  const { command, args, timeoutMs } = c.tokenCommand;
  return compact({
    command,
    args,
    timeout_secs: timeoutMs === 30_000 ? undefined : timeoutMs / 1000,
    key_id: c.keyId,
    kms_instance_id: c.kmsInstanceId,
    client_key_password_from_kms: c.clientKeyPasswordFromKms,
    kms:
      c.aliyun &&
      compact({
        type: "aliyun",
        oidc_provider_arn: c.aliyun.oidcProviderArn,
        role_arn: c.aliyun.roleArn,
        region_id: c.aliyun.regionId,
        sts_endpoint: c.aliyun.stsEndpoint,
        endpoint: c.aliyun.endpoint,
      }),
  });
}

// ---------------------------------------------------------------------------------------------
// tpm2: a key sealed to the TPM under a PCR policy. Upstream: `{}` (unimplemented there).

export interface Tpm2Config {
  type: "tpm2";
  /** PCR indexes the seal is bound to (default [7], Secure Boot state, as systemd-cryptenroll). */
  pcrs: number[];
  pcrBank: "sha1" | "sha256" | "sha384" | "sha512";
  /** Optional PIN combined with the PCR policy (PolicyAuthValue). */
  pin?: string;
  /** TPM access (TCTI string); default TPM2TOOLS_TCTI/TCTI from the environment, else device:/dev/tpmrm0. */
  tcti?: string;
}

const Tpm2Schema = v.pipe(
  v.strictObject({
    pcrs: v.optional(
      v.pipe(
        v.array(v.pipe(v.number(), v.integer("must be an integer"), v.minValue(0), v.maxValue(23))),
        v.check((list) => new Set(list).size === list.length, "lists a PCR twice"),
      ),
      [7],
    ),
    pcr_bank: v.optional(v.picklist(["sha1", "sha256", "sha384", "sha512"]), "sha256"),
    pin: v.optional(NonEmpty),
    tcti: v.optional(NonEmpty),
  }),
  v.transform((t): Tpm2Config => {
    const out: Tpm2Config = { type: "tpm2", pcrs: t.pcrs, pcrBank: t.pcr_bank };
    if (t.pin !== undefined) out.pin = t.pin;
    if (t.tcti !== undefined) out.tcti = t.tcti;
    return out;
  }),
);

const tpm2ToToml = (c: Tpm2Config): Table =>
  compact({ pcrs: c.pcrs, pcr_bank: c.pcrBank, pin: c.pin, tcti: c.tcti });

// ---------------------------------------------------------------------------------------------

export type ProviderConfig = OtpConfig | ExecConfig | KbsConfig | KmsConfig | OidcConfig | Tpm2Config;
export type ProviderType = ProviderConfig["type"];

/** Schema per provider table name; the order is the order shown in messages. */
export const PROVIDER_SCHEMAS = {
  otp: OtpSchema,
  exec: ExecSchema,
  kbs: KbsSchema,
  kms: KmsSchema,
  oidc: OidcSchema,
  tpm2: Tpm2Schema,
} as const satisfies Record<ProviderType, v.GenericSchema<unknown, ProviderConfig>>;

export const PROVIDER_TYPES = Object.keys(PROVIDER_SCHEMAS) as ProviderType[];

/** The provider table as TOML data (`{ kbs: {...} }`), upstream names where upstream has them. */
export function providerToToml(c: ProviderConfig): Table {
  switch (c.type) {
    case "otp":
      return { otp: otpToToml(c) };
    case "exec":
      return { exec: execToToml(c) };
    case "kbs":
      return { kbs: kbsToToml(c) };
    case "kms":
      return { kms: kmsToToml(c) };
    case "oidc":
      return { oidc: oidcToToml(c) };
    case "tpm2":
      return { tpm2: tpm2ToToml(c) };
  }
}

/**
 * `encrypt` table: exactly one `<provider>` sub-table. Parsed by hand around the per-provider
 * schema so that "two providers" and "unknown provider" get their own messages.
 */
export const EncryptSchema = v.pipe(
  v.record(v.string(), v.unknown()),
  v.rawTransform(({ dataset, addIssue, NEVER }): ProviderConfig => {
    const table = dataset.value;
    const names = Object.keys(table);
    if (names.length !== 1) {
      addIssue({
        message:
          names.length === 0
            ? `needs one key provider table, e.g. [<volume>.encrypt.kbs]; providers: ${PROVIDER_TYPES.join(", ")}`
            : `has ${names.length} key providers (${names.join(", ")}); exactly one is allowed`,
      });
      return NEVER;
    }
    const name = names[0]!;
    if (!(name in PROVIDER_SCHEMAS)) {
      addIssue({
        message: `unknown key provider '${name}'; use one of ${PROVIDER_TYPES.join(", ")}`,
        path: fieldPath(table, name),
      });
      return NEVER;
    }
    const result = v.safeParse(PROVIDER_SCHEMAS[name as ProviderType], table[name], { abortEarly: false });
    if (!result.success) {
      for (const issue of result.issues) {
        const inner = issue.path ?? [];
        // Described here, while the original issue type (e.g. strict_object) is still known.
        const innerKeys = inner.map((item) => String(item.key));
        addIssue({
          message: describeIssue(
            issue,
            innerKeys.at(-1),
            fieldsAt(PROVIDER_SCHEMAS[name as ProviderType], innerKeys.slice(0, -1)),
          ),
          path: [...fieldPath(table, name), ...inner],
        });
      }
      return NEVER;
    }
    return result.output;
  }),
);
