/**
 * Alibaba Cloud RPC-style API calls (KMS 2016-01-20 on kms.<region>.aliyuncs.com, STS 2015-04-01):
 * parameters in the query or form body, JSON answers, and the SignatureVersion 1.0 HMAC-SHA1
 * signature with an STS security token.
 */
import { createHmac, randomUUID } from "node:crypto";
import { text } from "../net/http.ts";
import { ALIYUN_RETRY, type RetryPolicy } from "../net/retry.ts";
import { AliyunError } from "./errors.ts";
import { send, withRetry } from "./http.ts";

export interface StsCredentials {
  accessKeyId: string;
  accessKeySecret: string;
  securityToken: string;
  /** ISO-8601, when known: for messages only. */
  expiration?: string;
}

/** RFC 3986 encoding with upper-case hex, as the RPC signature requires ("~" stays, space is %20). */
export function percentEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** "2024-01-02T03:04:05Z": the documented RPC Timestamp format (whole seconds, UTC). */
export function rpcTimestamp(now = new Date()): string {
  return `${now.toISOString().slice(0, 19)}Z`;
}

export function canonicalQuery(params: Record<string, string>): string {
  return Object.keys(params)
    .filter((k) => k !== "Signature")
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((k) => `${percentEncode(k)}=${percentEncode(params[k] ?? "")}`)
    .join("&");
}

/** base64(HMAC-SHA1(secret + "&", METHOD&%2F&percentEncode(canonical query))). */
export function rpcSignature(
  method: string,
  params: Record<string, string>,
  accessKeySecret: string,
): string {
  const toSign = `${method}&${percentEncode("/")}&${percentEncode(canonicalQuery(params))}`;
  return createHmac("sha1", `${accessKeySecret}&`).update(toSign).digest("base64");
}

export interface RpcCall {
  /** Base URL, e.g. https://kms.cn-beijing.aliyuncs.com/ */
  endpoint: string;
  action: string;
  version: string;
  params: Record<string, string>;
  /** Signed with these; omitted for anonymous APIs (AssumeRoleWithOIDC). */
  credentials?: StsCredentials;
  /** Send the parameters as a form body instead of the query (long values such as OIDC tokens). */
  formBody?: boolean;
  retry?: RetryPolicy;
}

/** Makes the call (with retries) and returns the parsed JSON answer. */
export async function callRpc(call: RpcCall): Promise<Record<string, unknown>> {
  const policy = call.retry ?? ALIYUN_RETRY;
  return withRetry(policy, async (timeoutMs) => {
    const params = buildParams(call);
    const encoded = Object.entries(params)
      .map(([k, v]) => `${percentEncode(k)}=${percentEncode(v)}`)
      .join("&");
    const r = await send({
      endpoint: call.endpoint,
      action: call.action,
      url: call.formBody ? call.endpoint : `${call.endpoint}?${encoded}`,
      method: "POST",
      headers: {
        accept: "application/json",
        "content-type": "application/x-www-form-urlencoded",
        "user-agent": "cryptpilot-fde",
        "x-acs-action": call.action,
        "x-acs-version": call.version,
      },
      body: call.formBody ? encoded : undefined,
      timeoutMs,
    });
    let json: Record<string, unknown> | undefined;
    try {
      const v = JSON.parse(text(r.body));
      if (v && typeof v === "object" && !Array.isArray(v)) json = v as Record<string, unknown>;
    } catch {
      // Reported below with the status.
    }
    if (r.status < 200 || r.status > 299) {
      return Promise.reject(
        new AliyunError({
          kind: "http",
          endpoint: call.endpoint,
          action: call.action,
          status: r.status,
          code: stringField(json, "Code"),
          serviceMessage: cleanMessage(stringField(json, "Message")),
          requestId: stringField(json, "RequestId"),
        }),
      );
    }
    if (!json) {
      throw new AliyunError({
        kind: "protocol",
        endpoint: call.endpoint,
        action: call.action,
        status: r.status,
        reason: "body is not a JSON object",
      });
    }
    return json;
  });
}

function buildParams(call: RpcCall): Record<string, string> {
  const params: Record<string, string> = {
    ...call.params,
    Action: call.action,
    Version: call.version,
    Format: "JSON",
    Timestamp: rpcTimestamp(),
    SignatureNonce: randomUUID(),
  };
  if (!call.credentials) return params;
  params.SignatureMethod = "HMAC-SHA1";
  params.SignatureVersion = "1.0";
  params.AccessKeyId = call.credentials.accessKeyId;
  params.SecurityToken = call.credentials.securityToken;
  params.Signature = rpcSignature("POST", params, call.credentials.accessKeySecret);
  return params;
}

function stringField(json: Record<string, unknown> | undefined, name: string): string | undefined {
  const v = json?.[name];
  return typeof v === "string" && v ? v : undefined;
}

/**
 * The gateway echoes its string-to-sign on SignatureDoesNotMatch; it contains the security token,
 * which must not reach logs.
 */
function cleanMessage(message: string | undefined): string | undefined {
  return message?.replace(/\s*server string to sign is:.*$/is, "").trim() || undefined;
}
