/**
 * Failures talking to an Alibaba Cloud endpoint. The message names the endpoint, the API action,
 * the HTTP status and the service's own Code/Message, so one log line tells an operator whether the
 * network, the clock, the credential or the secret is at fault. Never carries credentials.
 */
import { FdeError } from "../errors.ts";
import { printable } from "../escape.ts";

/**
 * "tls" (certificate or handshake), "redirect" and "too-large" are kept apart from "network": they
 * will not clear up on retry, and a host that intercepts the connection must not get more tries.
 */
export type AliyunFailureKind =
  | "network"
  | "tls"
  | "timeout"
  | "redirect"
  | "too-large"
  | "http"
  | "protocol";

export interface AliyunErrorDetails {
  kind: AliyunFailureKind;
  /** Base URL that was called (no query string: RPC queries carry tokens). */
  endpoint: string;
  /** API action, e.g. "GetSecretValue", or the IMDS path. */
  action: string;
  status?: number;
  /** The service's error code, e.g. "SignatureNotMatch". */
  code?: string;
  /** The service's error message (already stripped of echoed request data). */
  serviceMessage?: string;
  requestId?: string;
  /** Low-level reason for network/protocol failures. */
  reason?: string;
  cause?: unknown;
  hint?: string;
}

export class AliyunError extends FdeError {
  override name = "AliyunError";
  readonly details: AliyunErrorDetails;
  /** Attempts made before giving up (set by the retry loop). */
  attempts = 1;

  constructor(details: AliyunErrorDetails) {
    super(describe(details), { cause: details.cause, hint: details.hint ?? hintFor(details) });
    this.details = details;
  }

  /** Connection problems, timeouts, 5xx and throttling may clear up; auth and not-found will not. */
  get retryable(): boolean {
    const { kind, status, code } = this.details;
    if (kind === "network" || kind === "timeout") return true;
    if (kind !== "http") return false;
    if (code && /Throttling/i.test(code)) return true;
    if (code === "ServiceUnavailableTemporary" || code === "InternalFailure") return true;
    return status !== undefined && (status === 429 || status >= 500);
  }

  withAttempts(attempts: number): AliyunError {
    this.attempts = attempts;
    if (attempts > 1) this.message = `${describe(this.details)} (gave up after ${attempts} attempts)`;
    return this;
  }
}

function describe(d: AliyunErrorDetails): string {
  const head = `${d.action} at ${d.endpoint}`;
  switch (d.kind) {
    case "network":
      return `${head}: cannot connect (${d.reason ?? "network error"})`;
    case "tls":
    case "timeout":
    case "redirect":
    case "too-large":
      return `${head}: ${d.reason ?? d.kind}`;
    case "protocol":
      return `${head}: unexpected response${d.status ? ` (HTTP ${d.status})` : ""}: ${d.reason ?? ""}`.trimEnd();
    case "http": {
      // Code, Message and RequestId are the peer's text: printable and short.
      const code = d.code ? ` ${printable(d.code)}` : "";
      const msg = d.serviceMessage ? `: ${printable(d.serviceMessage, 500)}` : "";
      const rid = d.requestId ? ` (request id ${printable(d.requestId)})` : "";
      return `${head}: HTTP ${d.status}${code}${msg}${rid}`;
    }
  }
}

/** What to check next for the errors an operator is most likely to hit. */
function hintFor(d: AliyunErrorDetails): string | undefined {
  const code = d.code ?? "";
  if (/TimeTooSkewed|InvalidTimeStamp/.test(code))
    return "check the system clock (must be within 15 minutes)";
  if (code === "SignatureNotMatch" || code === "SignatureDoesNotMatch")
    return "the request signature was rejected: check that the credential (client key and password, or STS/RAM credentials) belongs to this endpoint";
  if (code.startsWith("AuthenticationFail.OIDCToken"))
    return "the OIDC token was rejected by STS: check the token command, the token's issuer/audience/expiry and oidc_provider_arn";
  if (code.startsWith("InvalidSecurityToken")) return "the STS security token is invalid or expired";
  if (/NotFound|KeyNotFound/.test(code))
    return "check the secret name and that it exists in this KMS instance/region";
  if (/Forbidden|NoPermission|Unauthorized/.test(code))
    return "the credential is not allowed to read this secret: check the RAM policy / application access point";
  return undefined;
}
