/**
 * One HTTP exchange with an Alibaba Cloud endpoint, plus the bounded retry loop around it.
 * Network failures and timeouts become AliyunError; HTTP errors are left to the caller, which knows
 * the service's error body format.
 */
import { log } from "../log.ts";
import { AliyunError } from "./errors.ts";

export interface RetryPolicy {
  /** Total attempts, including the first. */
  attempts: number;
  /** Delay before the second attempt; doubles after each failure up to maxDelayMs. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** Per-attempt limit for connect + response. */
  timeoutMs: number;
}

/** cryptpilot tries KMS 5 times; we do the same with exponential backoff (about 7.5 s of waiting). */
export const DEFAULT_RETRY: RetryPolicy = {
  attempts: 5,
  baseDelayMs: 500,
  maxDelayMs: 4000,
  timeoutMs: 15000,
};

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
  timeoutMs: number;
}

export interface HttpResponse {
  status: number;
  headers: Headers;
  body: Uint8Array;
}

export async function send(req: HttpRequest): Promise<HttpResponse> {
  let res: Response;
  try {
    res = await fetch(req.url, {
      method: req.method,
      headers: req.headers,
      body: req.body,
      signal: AbortSignal.timeout(req.timeoutMs),
      redirect: "manual",
      // Bun's fetch extension: `ca` replaces the default roots, pinning TLS to the instance CA.
      ...(req.caPem || req.clientCert ? { tls: { ca: req.caPem, ...req.clientCert } } : {}),
    } as RequestInit);
    return { status: res.status, headers: res.headers, body: await res.bytes() };
  } catch (cause) {
    const e = cause as Error & { code?: string };
    const timedOut = e?.name === "TimeoutError" || e?.name === "AbortError";
    const tls = !timedOut && isTlsFailure(e);
    throw new AliyunError({
      kind: timedOut ? "timeout" : tls ? "tls" : "network",
      endpoint: req.endpoint,
      action: req.action,
      reason: timedOut ? `${req.timeoutMs} ms` : networkReason(e),
      cause,
      hint:
        tls && req.caPem
          ? "the endpoint's certificate must be issued by kms_cert_pem (PrivateKmsCA_<kst-id>.pem)"
          : undefined,
    });
  }
}

function networkReason(e: Error & { code?: string }): string {
  if (e?.code && e.message && !e.message.includes(e.code)) return `${e.code}: ${e.message}`;
  return e?.message || e?.code || String(e);
}

function isTlsFailure(e: Error & { code?: string }): boolean {
  return /CERT|SSL|TLS|certificate|self.signed|UNABLE_TO_VERIFY/i.test(
    `${e?.code ?? ""} ${e?.message ?? ""}`,
  );
}

/**
 * Runs `attempt` until it succeeds, fails with a non-retryable error, or the policy's attempts are
 * used up. `attempt` must rebuild the request each time (fresh Date, nonce, signature).
 */
export async function withRetry<T>(policy: RetryPolicy, attempt: () => Promise<T>): Promise<T> {
  let delay = policy.baseDelayMs;
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (err) {
      if (!(err instanceof AliyunError)) throw err;
      if (!err.retryable || n >= policy.attempts) throw err.withAttempts(n);
      log.warn(`${err.message}; retrying in ${delay} ms (attempt ${n + 1} of ${policy.attempts})`);
      await Bun.sleep(delay);
      delay = Math.min(delay * 2, policy.maxDelayMs);
    }
  }
}

export function text(body: Uint8Array): string {
  return new TextDecoder().decode(body);
}
