/**
 * GetSecretValue on a KMS instance endpoint (https://<kst-id>.cryptoservice.kms.aliyuncs.com/),
 * authenticated with a Client Key: protobuf body, x-kms-* headers, RSA-SHA256 request signature.
 */
import { createHash } from "node:crypto";
import { ALIYUN_RETRY, type RetryPolicy } from "../net/retry.ts";
import type { ClientKey } from "./client-key.ts";
import { ErrorMessage, GetSecretValueRequest, GetSecretValueResponse } from "./dkms-proto.ts";
import { AliyunError } from "./errors.ts";
import { send, withRetry } from "./http.ts";

export const API_VERSION = "dkms-gcs-0.2";
export const SIGNATURE_METHOD = "RSA_PKCS1_SHA_256";
const CONTENT_TYPE = "application/x-protobuf";

export function instanceEndpoint(kmsInstanceId: string): string {
  return `https://${kmsInstanceId}.cryptoservice.kms.aliyuncs.com/`;
}

/**
 * The text the client key signs: method, body hash, content type, date, then every x-kms-* header
 * (lower-case name, trimmed value) sorted by name, then the resource path "/".
 */
export function stringToSign(contentSha256: string, date: string, headers: Record<string, string>): string {
  const kms = Object.entries(headers)
    .map(([k, v]) => [k.toLowerCase(), v.trim()] as const)
    .filter(([k]) => k.startsWith("x-kms-"))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}:${v}\n`)
    .join("");
  return `POST\n${contentSha256}\n${CONTENT_TYPE}\n${date}\n${kms}/`;
}

/** All headers of one signed request; `now` is a parameter so tests can check the Date handling. */
export function signedHeaders(
  key: ClientKey,
  apiName: string,
  body: Uint8Array,
  now = new Date(),
): Record<string, string> {
  const contentSha256 = createHash("sha256").update(body).digest("hex").toUpperCase();
  const date = now.toUTCString();
  const kms = {
    "x-kms-apiversion": API_VERSION,
    "x-kms-apiname": apiName,
    "x-kms-signaturemethod": SIGNATURE_METHOD,
    // The service's header name really has three "c"s.
    "x-kms-acccesskeyid": key.keyId,
  };
  return {
    accept: CONTENT_TYPE,
    date,
    "user-agent": "cryptpilot-fde",
    ...kms,
    "content-type": CONTENT_TYPE,
    "content-sha256": contentSha256,
    authorization: `Bearer ${key.sign(stringToSign(contentSha256, date, kms))}`,
  };
}

export interface InstanceRequest {
  /** Base URL, normally instanceEndpoint(kms_instance_id). */
  endpoint: string;
  /** The instance CA (PrivateKmsCA_<kst-id>.pem): the only TLS trust root used. */
  caPem: string;
  key: ClientKey;
  retry?: RetryPolicy;
}

/** Returns the SecretData string of the secret's current version. */
export async function getSecretValue(req: InstanceRequest, secretName: string): Promise<string> {
  const action = "GetSecretValue";
  const policy = req.retry ?? ALIYUN_RETRY;
  const body = GetSecretValueRequest.encode({ SecretName: secretName, FetchExtendedConfig: true });
  const res = await withRetry(policy, async (timeoutMs) => {
    const r = await send({
      endpoint: req.endpoint,
      action,
      url: req.endpoint,
      method: "POST",
      headers: signedHeaders(req.key, action, body),
      body,
      caPem: req.caPem,
      // The instance may ask for the client key's certificate (the official SDK sends it); CDH
      // does not, and instances accept that too.
      clientCert: req.key.tlsIdentity,
      timeoutMs,
    });
    if (r.status < 200 || r.status > 299) throw instanceError(req.endpoint, action, r.status, r.body);
    return r;
  });
  try {
    return GetSecretValueResponse.decode(res.body).SecretData;
  } catch (cause) {
    throw new AliyunError({
      kind: "protocol",
      endpoint: req.endpoint,
      action,
      status: res.status,
      reason: "body is not a GetSecretValueResponse",
      cause,
    });
  }
}

function instanceError(endpoint: string, action: string, status: number, body: Uint8Array): AliyunError {
  try {
    const e = ErrorMessage.decode(body);
    if (e.ErrorCode) {
      return new AliyunError({
        kind: "http",
        endpoint,
        action,
        status,
        code: e.ErrorCode,
        serviceMessage: e.ErrorMessage,
        requestId: e.RequestId,
      });
    }
  } catch {
    // Not a dkms_api.Error (e.g. a proxy's HTML page): report the status alone.
  }
  return new AliyunError({ kind: "http", endpoint, action, status });
}
