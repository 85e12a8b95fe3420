/** KMS GetSecretValue on the shared gateway kms.<region>.aliyuncs.com, signed with STS credentials. */

import type { RetryPolicy } from "../net/retry.ts";
import { AliyunError } from "./errors.ts";
import { callRpc, type StsCredentials } from "./rpc.ts";

export function kmsEndpoint(regionId: string): string {
  return `https://kms.${regionId}.aliyuncs.com/`;
}

export interface SharedKmsRequest {
  endpoint: string;
  regionId: string;
  credentials: StsCredentials;
  retry?: RetryPolicy;
}

/** Returns the SecretData string of the secret's current version. */
export async function getSecretValueRpc(req: SharedKmsRequest, secretName: string): Promise<string> {
  const action = "GetSecretValue";
  const json = await callRpc({
    endpoint: req.endpoint,
    action,
    version: "2016-01-20",
    params: { RegionId: req.regionId, SecretName: secretName, FetchExtendedConfig: "true" },
    credentials: req.credentials,
    retry: req.retry,
  });
  if (typeof json.SecretData !== "string") {
    throw new AliyunError({
      kind: "protocol",
      endpoint: req.endpoint,
      action,
      status: 200,
      reason: "no SecretData in the answer",
    });
  }
  return json.SecretData;
}
