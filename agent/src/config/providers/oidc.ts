/**
 * oidc: a KMS secret fetched with an OIDC token from a local command.
 * Upstream: command, args, key_id, [kms] type = "aliyun", oidc_provider_arn, role_arn, region_id.
 * Documented: kms_instance_id, client_key_password_from_kms, [oidc_token_from_exec] command/args.
 * Ours: [kms] sts_endpoint / endpoint to reach other hosts (test servers, proxies).
 */
import * as v from "valibot";
import {
  Args,
  compact,
  fieldPath,
  HttpUrl,
  NonEmpty,
  type ProviderTable,
  type Table,
  TimeoutSecs,
  timeoutSecsToToml,
} from "./common.ts";

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
    timeout_secs: timeoutSecsToToml(timeoutMs),
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

export const oidc: ProviderTable<OidcConfig> = { type: "oidc", schema: OidcSchema, toToml: oidcToToml };
