/** STS AssumeRoleWithOIDC: trades an OIDC id_token for temporary credentials. Anonymous call. */

import type { RetryPolicy } from "../net/retry.ts";
import { AliyunError } from "./errors.ts";
import { callRpc, type StsCredentials } from "./rpc.ts";

/** Two finance regions use the central endpoint; the rest have sts.<region>.aliyuncs.com. */
export function stsEndpoint(regionId: string): string {
  const central = regionId === "cn-hangzhou-finance" || regionId === "cn-shenzhen-finance-1";
  return `https://${central ? "sts.aliyuncs.com" : `sts.${regionId}.aliyuncs.com`}/`;
}

export interface AssumeRoleWithOidcRequest {
  endpoint: string;
  roleArn: string;
  oidcProviderArn: string;
  oidcToken: string;
  /** Same constant session name as confidential-data-hub, so RAM audit logs look alike. */
  roleSessionName?: string;
  retry?: RetryPolicy;
}

export async function assumeRoleWithOidc(req: AssumeRoleWithOidcRequest): Promise<StsCredentials> {
  const action = "AssumeRoleWithOIDC";
  const json = await callRpc({
    endpoint: req.endpoint,
    action,
    version: "2015-04-01",
    params: {
      RoleArn: req.roleArn,
      OIDCProviderArn: req.oidcProviderArn,
      OIDCToken: req.oidcToken,
      RoleSessionName: req.roleSessionName ?? "zero-trust-session",
    },
    // Tokens can be 20 000 characters: keep them out of the URL.
    formBody: true,
    retry: req.retry,
  });
  const c = json.Credentials as Record<string, unknown> | undefined;
  const credentials = {
    accessKeyId: c?.AccessKeyId,
    accessKeySecret: c?.AccessKeySecret,
    securityToken: c?.SecurityToken,
    expiration: c?.Expiration,
  };
  if (
    ![credentials.accessKeyId, credentials.accessKeySecret, credentials.securityToken].every(
      (v) => typeof v === "string" && v,
    )
  ) {
    throw new AliyunError({
      kind: "protocol",
      endpoint: req.endpoint,
      action,
      status: 200,
      reason: "no Credentials.AccessKeyId/AccessKeySecret/SecurityToken in the answer",
    });
  }
  return credentials as StsCredentials;
}
