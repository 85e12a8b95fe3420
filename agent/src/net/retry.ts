/**
 * The one retry policy, failure classification and retry loop of every network key client (KBS,
 * Alibaba KMS/STS/IMDS), so they fail alike, and their default policies, from which the
 * configuration's defaults are derived. What is worth retrying: connection failures and timeouts,
 * which may clear up. What is final: certificate failures (a MITM does not get better by
 * retrying, and neither does a wrong clock), non-TLS answers, redirects and oversized replies.
 * No heavy imports (no node:tls/crypto): config check loads this for the defaults.
 */
import { log } from "../log.ts";

export interface RetryPolicy {
  /** Attempts per request, the first included. */
  attempts: number;
  /** First backoff delay; doubles per attempt up to maxDelayMs (times a 0.5-1 jitter). */
  baseDelayMs: number;
  maxDelayMs: number;
  /** One exchange: connect, headers and the whole body. */
  requestTimeoutMs: number;
  /** Overall budget of one retry loop (all attempts and waits); no attempt starts after it. */
  totalTimeoutMs: number;
}

/**
 * One KBS exchange's timeout (the kbs provider's request_timeout_secs): 60 s, guest-components'
 * KBS client default. A cold trustee verifier fetches DCAP/KDS collateral before it answers
 * /attest, which can take ~40 s.
 */
export const KBS_REQUEST_TIMEOUT_MS = 60_000;

/**
 * The KBS client's default (and the kbs provider's retry_attempts, retry_timeout_secs): survives
 * a key broker that comes up ~30 s after the guest: waits of ~1, 2, 4, 8, 10, 10 ... s (times
 * 0.5-1 jitter) reach well past a minute within 15 attempts.
 */
export const KBS_RETRY: RetryPolicy = {
  attempts: 15,
  totalTimeoutMs: 180_000,
  requestTimeoutMs: KBS_REQUEST_TIMEOUT_MS,
  baseDelayMs: 1_000,
  maxDelayMs: 10_000,
};

/**
 * Alibaba Cloud (KMS, STS, IMDS): cryptpilot tries KMS 5 times; we do the same with exponential
 * backoff (about 7.5 s of waiting at most), each exchange within 15 s, all of it within 90 s.
 */
export const ALIYUN_RETRY: RetryPolicy = {
  attempts: 5,
  baseDelayMs: 500,
  maxDelayMs: 4000,
  requestTimeoutMs: 15_000,
  totalTimeoutMs: 90_000,
};

/** Why an exchange produced no usable reply. */
export type FailureKind = "network" | "timeout" | "certificate" | "tls" | "redirect" | "too-large";

/** The kinds that may clear up on a later attempt; every other kind is final. */
export const RETRYABLE_KINDS: ReadonlySet<FailureKind> = new Set(["network", "timeout"]);

export class HttpFailure extends Error {
  override name = "HttpFailure";
  readonly kind: FailureKind;
  /** For redirects: the Location the peer named (sanitised, shortened). */
  readonly location?: string;
  /** A certificate expired or not yet valid: the clock may be wrong, not the trust anchor. */
  readonly clock: boolean;
  constructor(
    kind: FailureKind,
    message: string,
    options: { cause?: unknown; location?: string; clock?: boolean } = {},
  ) {
    super(message, { cause: options.cause });
    this.kind = kind;
    this.location = options.location;
    this.clock = options.clock ?? false;
  }
  get retryable(): boolean {
    return RETRYABLE_KINDS.has(this.kind);
  }
}

/** OpenSSL/BoringSSL verify results that mean "not valid at this time" (leaf or any CA above it). */
export const CERTIFICATE_TIME_CODES: ReadonlySet<string> = new Set([
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
]);

/**
 * Certificate verification failures (OpenSSL/BoringSSL verify codes and Node's hostname check):
 * unknown CA, self-signed, hostname mismatch, expired or not yet valid. Final, never retried.
 */
const CERTIFICATE_CODE =
  /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY|DECRYPT)|HOSTNAME|ALTNAME|INVALID_CA|INVALID_PURPOSE|CHAIN_TOO_LONG|PATH_LENGTH/;

/** Bun's texts for socket errors are guesses ("Was there a typo in the url or port?"). */
const SOCKET_ERRORS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ConnectionRefused: "connection refused",
  ENETUNREACH: "network unreachable: no route to the peer (is the network up?)",
  EHOSTUNREACH: "host unreachable",
  ECONNRESET: "connection reset by the peer",
  ETIMEDOUT: "connection timed out",
  ENOTFOUND: "cannot resolve the host name",
  EAI_AGAIN: "cannot resolve the host name (DNS not answering)",
};

/**
 * The failure a fetch() error stands for. A certificate that is expired or not yet valid is
 * marked `clock` (net/cert-time.ts then says what the guest clock reads); it stays final.
 */
export function classify(cause: unknown): HttpFailure {
  const e = cause as Error & { code?: string };
  const code = typeof e?.code === "string" ? e.code : "";
  const message = String(e?.message ?? cause);
  if (CERTIFICATE_CODE.test(code)) {
    return new HttpFailure("certificate", `TLS certificate not trusted (${code}: ${message})`, {
      cause,
      clock: CERTIFICATE_TIME_CODES.has(code),
    });
  }
  // EPROTO: the peer answered the TLS handshake with something else (plain HTTP on that port, a
  // garbled reply); a reset during the handshake is ECONNRESET and stays retryable.
  if (code === "EPROTO") {
    return new HttpFailure("tls", `TLS handshake failed (${code || message})`, { cause });
  }
  const known = SOCKET_ERRORS[code];
  if (known) return new HttpFailure("network", `${known} (${code})`, { cause });
  return new HttpFailure("network", code && !message.includes(code) ? `${code}: ${message}` : message, {
    cause,
  });
}

/** The wait before attempt `attempt + 1`: exponential, capped, times a 0.5-1 jitter. */
export function backoffDelay(policy: RetryPolicy, attempt: number, random = Math.random): number {
  const exp = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return Math.round(exp * (0.5 + random() * 0.5));
}

export interface RetryHooks<E> {
  /** The errors this loop knows; anything else is rethrown at once. */
  isOwn(err: unknown): err is E;
  retryable(err: E): boolean;
  /** The line logged before a retry. */
  describe(err: E): string;
  /** The error reported when attempts or time run out. */
  giveUp(err: E, attempts: number): Error;
  /** Absolute time (ms since epoch) after which no new attempt starts; default now + total. */
  deadline?: number;
  /** For tests: the wait between attempts (default Bun.sleep). */
  sleep?: (ms: number) => Promise<unknown>;
}

/**
 * Runs `attempt` until it succeeds, fails finally, or the attempts or the deadline run out.
 * `attempt` gets the time left for its exchange and must rebuild the request (fresh nonce, date).
 */
export async function withRetry<T, E>(
  policy: RetryPolicy,
  attempt: (timeoutMs: number) => Promise<T>,
  hooks: RetryHooks<E>,
): Promise<T> {
  const deadline = hooks.deadline ?? Date.now() + policy.totalTimeoutMs;
  const sleep = hooks.sleep ?? Bun.sleep;
  for (let n = 1; ; n++) {
    const timeout = Math.max(1, Math.min(policy.requestTimeoutMs, deadline - Date.now()));
    try {
      return await attempt(timeout);
    } catch (err) {
      if (!hooks.isOwn(err) || !hooks.retryable(err)) throw err;
      const delay = backoffDelay(policy, n);
      if (n >= policy.attempts || Date.now() + delay >= deadline) throw hooks.giveUp(err, n);
      log.warn(
        `${hooks.describe(err)}; retrying in ${(delay / 1000).toFixed(1)} s (attempt ${n + 1}/${policy.attempts})`,
      );
      await sleep(delay);
    }
  }
}
