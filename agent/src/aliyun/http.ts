/**
 * One exchange with an Alibaba Cloud endpoint (KMS, STS, IMDS) and the bounded retry loop around
 * it, from net/http.ts and net/retry.ts, so KMS fails as the KBS does: one deadline per exchange covering the
 * body, replies capped at CONTROL_REPLY_MAX_BYTES, redirects refused, certificate failures final.
 * Transport failures become AliyunError; HTTP errors are left to the caller, which knows the
 * service's error body format.
 */
import { CONTROL_REPLY_MAX_BYTES, type ExchangeReply, exchange } from "../net/http.ts";
import { HttpFailure, type RetryPolicy, withRetry as retryLoop } from "../net/retry.ts";
import { AliyunError, type AliyunFailureKind } from "./errors.ts";

export interface HttpRequest {
  /** Base URL shown in errors (never contains a query string). */
  endpoint: string;
  action: string;
  url: string;
  method: "GET" | "POST" | "PUT";
  headers?: Record<string, string>;
  body?: Uint8Array | string;
  /** PEM CA bundle that replaces the default trust roots (KMS instance endpoints). */
  caPem?: string;
  /** TLS client certificate, presented if the server asks for one. */
  clientCert?: { cert: string; key: string };
  /** Whole exchange, body included (the retry loop passes the time left). */
  timeoutMs: number;
}

export type HttpResponse = ExchangeReply;

const KINDS: Record<HttpFailure["kind"], AliyunFailureKind> = {
  network: "network",
  timeout: "timeout",
  certificate: "tls",
  tls: "tls",
  redirect: "redirect",
  "too-large": "too-large",
};

function hintFor(failure: HttpFailure, caPem: string | undefined): string | undefined {
  switch (failure.kind) {
    case "certificate":
      return caPem
        ? "the endpoint's certificate must be issued by kms_cert_pem (PrivateKmsCA_<kst-id>.pem); also check the clock (an expired or not yet valid certificate fails the same way)"
        : "the endpoint's certificate is not trusted by the system CA bundle (SSL_CERT_FILE); check the bundle and the clock";
    case "redirect":
      return `Alibaba Cloud endpoints answer directly; a redirect to ${failure.location} comes from a proxy or a hostile network: set the endpoint itself if you trust it`;
    case "too-large":
      return "replies of this API are small; a larger one is a wrong endpoint or a hostile network, and is not read";
    default:
      return undefined;
  }
}

export async function send(req: HttpRequest): Promise<HttpResponse> {
  try {
    return await exchange({
      method: req.method,
      url: req.url,
      headers: req.headers,
      body: req.body,
      ca: req.caPem,
      clientCert: req.clientCert,
      timeoutMs: req.timeoutMs,
      maxBodyBytes: CONTROL_REPLY_MAX_BYTES,
    });
  } catch (cause) {
    if (!(cause instanceof HttpFailure)) throw cause;
    throw new AliyunError({
      kind: KINDS[cause.kind],
      endpoint: req.endpoint,
      action: req.action,
      reason: cause.message,
      cause,
      hint: hintFor(cause, req.caPem),
    });
  }
}

/**
 * Runs `attempt` until it succeeds, fails with a non-retryable error, or the policy's attempts or
 * total time are used up. `attempt` gets the time left for its exchange and must rebuild the
 * request each time (fresh Date, nonce, signature).
 */
export function withRetry<T>(policy: RetryPolicy, attempt: (timeoutMs: number) => Promise<T>): Promise<T> {
  return retryLoop(policy, attempt, {
    isOwn: (err): err is AliyunError => err instanceof AliyunError,
    retryable: (err) => err.retryable,
    describe: (err) => err.message,
    giveUp: (err, n) => err.withAttempts(n),
  });
}
