/**
 * HTTP to the KBS with bounded retries: connection errors, timeouts and 5xx are retried with
 * exponential backoff and jitter until the attempt count or the overall deadline runs out;
 * everything else (401/403/404 policy answers included) is returned to the caller at once.
 */
import { existsSync, readFileSync } from "node:fs";
import { log } from "../log.ts";
import { KbsError, type KbsErrorInfo, type KbsStep } from "./errors.ts";

export interface RetryPolicy {
  /** Attempts per request, the first included. */
  attempts: number;
  /** Overall budget for one key fetch (all requests and waits), in ms. */
  totalTimeoutMs: number;
  /** One request's timeout, in ms. */
  requestTimeoutMs: number;
  /** First backoff delay; doubles per attempt up to maxDelayMs. */
  baseDelayMs: number;
  maxDelayMs: number;
}

/**
 * Survives a key broker that comes up ~30 s after the guest: waits of ~1, 2, 4, 8, 10, 10 ... s
 * (times 0.5-1 jitter) reach well past a minute within 15 attempts.
 */
export const DEFAULT_RETRY: RetryPolicy = {
  attempts: 15,
  totalTimeoutMs: 180_000,
  requestTimeoutMs: 15_000,
  baseDelayMs: 1_000,
  maxDelayMs: 10_000,
};

export interface HttpContext {
  retry: RetryPolicy;
  /** Absolute time (ms since epoch) after which no new attempt starts. */
  deadline: number;
  /** PEM trust anchors (kbs_root_cert, else the system bundle; Bun's built-in roots when neither). */
  ca?: string;
  /** Counts every HTTP request sent, for tests and the benchmark. */
  onRequest?: (step: KbsStep) => void;
}

export interface KbsRequest {
  step: KbsStep;
  method: "GET" | "POST";
  url: string;
  headers?: Record<string, string>;
  body?: string;
}

/** OpenSSL's conventional bundle locations (Debian/Ubuntu, Fedora/RHEL/Anolis, Alpine/others). */
const SYSTEM_CA_FILES = [
  "/etc/ssl/certs/ca-certificates.crt",
  "/etc/pki/tls/certs/ca-bundle.crt",
  "/etc/ssl/cert.pem",
];

/**
 * The system trust store as a PEM bundle (SSL_CERT_FILE first, as OpenSSL does), or undefined
 * when the machine has none (e.g. an initrd without certificates): then Bun's bundled Mozilla
 * roots apply.
 */
export function systemCaBundle(env: Record<string, string | undefined> = process.env): string | undefined {
  for (const file of [env.SSL_CERT_FILE, ...SYSTEM_CA_FILES]) {
    if (file && existsSync(file)) return readFileSync(file, "utf8");
  }
  return undefined;
}

export function backoffDelay(policy: RetryPolicy, attempt: number, random = Math.random): number {
  const exp = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return Math.round(exp * (0.5 + random() * 0.5));
}

/** Parse a trustee error body if there is one; otherwise keep a short excerpt as the detail. */
export function errorInfo(text: string): KbsErrorInfo {
  try {
    const j = JSON.parse(text) as KbsErrorInfo;
    if (j && typeof j === "object" && (typeof j.type === "string" || typeof j.detail === "string")) {
      return { type: j.type, detail: j.detail };
    }
  } catch {}
  const excerpt = text.trim().replace(/\s+/g, " ").slice(0, 200);
  return excerpt ? { detail: excerpt } : {};
}

/** Bun's texts for socket errors are guesses ("Was there a typo in the url or port?"). */
const SOCKET_ERRORS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ENETUNREACH: "network unreachable: no route to the broker (is the network up?)",
  EHOSTUNREACH: "host unreachable",
  ECONNRESET: "connection reset by the peer",
  ETIMEDOUT: "connection timed out",
  ENOTFOUND: "cannot resolve the host name",
  EAI_AGAIN: "cannot resolve the host name (DNS not answering)",
};

function describeFailure(cause: unknown): string {
  const e = cause as Error & { code?: string };
  if (e?.name === "TimeoutError") return "timed out";
  const known = e?.code ? SOCKET_ERRORS[e.code] : undefined;
  if (known) return `${known} (${e.code})`;
  const message = String(e?.message ?? cause);
  return e?.code && !message.includes(e.code) ? `${e.code}: ${message}` : message;
}

async function once(req: KbsRequest, ctx: HttpContext): Promise<Response> {
  ctx.onRequest?.(req.step);
  const timeout = Math.max(1, Math.min(ctx.retry.requestTimeoutMs, ctx.deadline - Date.now()));
  return await fetch(req.url, {
    method: req.method,
    headers: { ...(req.body === undefined ? {} : { "content-type": "application/json" }), ...req.headers },
    body: req.body,
    redirect: "manual",
    signal: AbortSignal.timeout(timeout),
    // Bun: `ca` replaces the default trust store, which is what pinning kbs_root_cert means.
    ...(ctx.ca ? { tls: { ca: ctx.ca } } : {}),
  } as RequestInit);
}

/** Send with retries. Returns the first non-5xx response; throws KbsError when out of budget. */
export async function kbsFetch(req: KbsRequest, ctx: HttpContext): Promise<Response> {
  let last: KbsError;
  for (let attempt = 1; attempt <= ctx.retry.attempts; attempt++) {
    try {
      const res = await once(req, ctx);
      if (res.status < 500) return res;
      last = new KbsError(req.step, req.url, "failed", {
        status: res.status,
        info: errorInfo(await res.text()),
        retryable: true,
      });
    } catch (cause) {
      last = new KbsError(req.step, req.url, `could not be completed (${describeFailure(cause)})`, {
        cause,
        retryable: true,
        hint: /CERT|VERIFY|SELF_SIGNED|TLS|SSL/i.test(describeFailure(cause))
          ? "the broker's TLS certificate is not trusted: set kbs_root_cert to the CA that issued it (PEM)"
          : "is the key broker up and reachable from this machine (network, address, port)?",
      });
    }
    const delay = backoffDelay(ctx.retry, attempt);
    if (attempt === ctx.retry.attempts || Date.now() + delay >= ctx.deadline) {
      throw new KbsError(
        req.step,
        req.url,
        `gave up after ${attempt} attempt${attempt > 1 ? "s" : ""}: ${last.reason}`,
        {
          cause: last.cause,
          hint: last.hint ?? "the key broker kept failing; check its logs",
        },
      );
    }
    log.warn(
      `kbs: ${req.step} request to ${req.url} ${last.reason}; retrying in ${(delay / 1000).toFixed(1)} s (attempt ${attempt + 1}/${ctx.retry.attempts})`,
    );
    await Bun.sleep(delay);
  }
  throw new Error("unreachable: retry.attempts must be at least 1");
}
