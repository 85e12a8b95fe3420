/**
 * One HTTP exchange with a key service (KBS, Alibaba KMS/STS/IMDS) and the bounded retry loop
 * around it, shared by every network key provider so they fail alike. The host owns the network:
 * a reply is attacker-controlled until checked, so every exchange has one deadline covering
 * connect, headers AND body, every body is read as a stream up to a per-endpoint cap, redirects
 * are refused and certificate failures are final (a MITM does not get better by retrying).
 */
import { printable } from "../escape.ts";
import { log } from "../log.ts";
import { CERTIFICATE_TIME_CODES, certificateTimeMessage } from "./cert-time.ts";

/** Cap for JSON/protobuf control replies (KBS /auth, /attest; KMS, STS, IMDS): 1 MiB. */
export const CONTROL_REPLY_MAX_BYTES = 1024 * 1024;

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
 * Why an exchange produced no usable reply. `retryable`: connection failures and timeouts, which
 * may clear up; certificate, redirect and size failures will not.
 */
export type FailureKind = "network" | "timeout" | "certificate" | "tls" | "redirect" | "too-large";

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
    return this.kind === "network" || this.kind === "timeout";
  }
}

export interface ExchangeRequest {
  method: "GET" | "POST" | "PUT";
  url: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  /** PEM trust anchors replacing the default roots (Bun's `tls.ca`). */
  ca?: string;
  /** TLS client certificate, presented if the server asks for one. */
  clientCert?: { cert: string; key: string };
  /** Whole exchange, body included. */
  timeoutMs: number;
  /** Largest body accepted; a larger Content-Length is refused before reading. */
  maxBodyBytes: number;
}

export interface ExchangeReply {
  status: number;
  headers: Headers;
  body: Uint8Array;
}

/** "15 s" for whole seconds, else "1500 ms". */
export function duration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

/** Bytes as "1 MiB" / "64 KiB" when exact, else a byte count. */
export function size(bytes: number): string {
  if (bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}

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
 * Certificate verification failures (OpenSSL/BoringSSL verify codes and Node's hostname check):
 * unknown CA, self-signed, hostname mismatch, expired or not yet valid. Final, never retried.
 */
const CERTIFICATE_CODE =
  /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY|DECRYPT)|HOSTNAME|ALTNAME|INVALID_CA|INVALID_PURPOSE|CHAIN_TOO_LONG|PATH_LENGTH/;

function classify(cause: unknown): HttpFailure {
  const e = cause as Error & { code?: string };
  const code = typeof e?.code === "string" ? e.code : "";
  const message = String(e?.message ?? cause);
  if (CERTIFICATE_CODE.test(code)) {
    return new HttpFailure("certificate", `TLS certificate not trusted (${code}: ${message})`, { cause });
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

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/**
 * Reads the body as a stream, never holding more than `max` bytes; cancels the stream at the cap.
 */
async function readCapped(res: Response, max: number): Promise<Uint8Array> {
  const declared = res.headers.get("content-length");
  if (declared !== null && Number(declared) > max) {
    await res.body?.cancel().catch(() => {});
    throw new HttpFailure(
      "too-large",
      `the reply declares ${declared} bytes (Content-Length), more than the ${size(max)} accepted here`,
    );
  }
  if (!res.body) return new Uint8Array();
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > max) {
      await reader.cancel().catch(() => {});
      throw new HttpFailure("too-large", `the reply body exceeds the ${size(max)} accepted here`);
    }
    chunks.push(value);
  }
  const body = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    body.set(c, at);
    at += c.length;
  }
  return body;
}

/** One request and its whole, capped reply, within req.timeoutMs. Throws HttpFailure. */
export async function exchange(req: ExchangeRequest): Promise<ExchangeReply> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), req.timeoutMs);
  let phase: "headers" | "body" = "headers";
  try {
    const res = await fetch(req.url, {
      method: req.method,
      headers: req.headers,
      body: req.body,
      redirect: "manual",
      signal: abort.signal,
      // Bun: `ca` replaces the default trust store (pinning); the client cert is offered on request.
      ...(req.ca || req.clientCert ? { tls: { ca: req.ca, ...req.clientCert } } : {}),
    } as RequestInit);
    if (REDIRECTS.has(res.status)) {
      await res.body?.cancel().catch(() => {});
      const location = printable(res.headers.get("location") ?? "(no Location)");
      throw new HttpFailure("redirect", `was redirected (HTTP ${res.status}) to ${location}`, { location });
    }
    phase = "body";
    return { status: res.status, headers: res.headers, body: await readCapped(res, req.maxBodyBytes) };
  } catch (cause) {
    if (cause instanceof HttpFailure) throw cause;
    if (abort.signal.aborted) {
      throw new HttpFailure(
        "timeout",
        phase === "headers"
          ? `timed out: no reply within ${duration(req.timeoutMs)}`
          : `timed out: the reply body did not arrive within ${duration(req.timeoutMs)}`,
        { cause },
      );
    }
    const code = String((cause as { code?: unknown })?.code ?? "");
    if (CERTIFICATE_TIME_CODES.has(code)) {
      const message = await certificateTimeMessage(code, req.url, req.ca, req.timeoutMs);
      throw new HttpFailure("certificate", message, { cause, clock: true });
    }
    throw classify(cause);
  } finally {
    clearTimeout(timer);
  }
}

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
      await Bun.sleep(delay);
    }
  }
}

export function text(body: Uint8Array): string {
  return new TextDecoder().decode(body);
}
