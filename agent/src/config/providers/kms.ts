/**
 * kms: a secret from Alibaba Cloud KMS.
 * Upstream: kms_instance_id, secret_name, and either client_key + client_key_password + kms_cert_pem
 * or auth_mode = "ecs_ram_role" with optional ecs_ram_role_name, region_id.
 * Documented: kms_instance_id, client_key_id, client_key_password_from_kms.
 * Ours: client_key / kms_cert_pem may be file paths, client_key_password_file, and endpoint /
 * imds_endpoint to reach other hosts (test servers, proxies); see providers/kms.ts.
 */
import * as v from "valibot";
import { compact, fieldPath, HttpUrl, NonEmpty, type ProviderTable, type Table } from "./common.ts";

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

export const kms: ProviderTable<KmsConfig> = { type: "kms", schema: KmsSchema, toToml: kmsToToml };
