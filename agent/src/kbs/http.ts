/**
 * HTTP to the KBS with bounded retries (the shared loop of net/retry.ts): connection errors,
 * timeouts (body included) and 5xx are retried with exponential backoff and jitter until the
 * attempt count or the overall deadline runs out; certificate failures, redirects and oversized
 * replies are final; every other answer (401/403/404 policy answers included) goes to the caller.
 */
import { existsSync, readFileSync } from "node:fs";
import { printable } from "../escape.ts";
import type { CookieJar } from "../net/cookies.ts";
import { CONTROL_REPLY_MAX_BYTES, type ExchangeReply, exchange, text } from "../net/http.ts";
import { HttpFailure, type RetryPolicy, withRetry } from "../net/retry.ts";
import { MAX_KEY_BYTES } from "../providers/key-size.ts";
import { KbsError, type KbsErrorInfo, type KbsStep } from "./errors.ts";

/**
 * A /resource reply is a flattened JWE of the key: base64url (4/3) of at most MAX_KEY_BYTES plus
 * the protected header, IV, tag and an RSA-wrapped key (under 2 KiB); 16 KiB of slack.
 */
export const KBS_RESOURCE_REPLY_MAX_BYTES = Math.ceil((MAX_KEY_BYTES * 4) / 3) + 16 * 1024;

/** Reply cap per protocol step: /auth and /attest are control messages, /resource carries a key. */
export const KBS_REPLY_MAX_BYTES: Record<KbsStep, number> = {
  auth: CONTROL_REPLY_MAX_BYTES,
  attest: CONTROL_REPLY_MAX_BYTES,
  resource: KBS_RESOURCE_REPLY_MAX_BYTES,
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
  /** The session's cookies: sent with every attempt, and every reply's Set-Cookie kept. */
  jar?: CookieJar;
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

/** Parse a trustee error body if there is one; otherwise keep a short excerpt as the detail. */
export function errorInfo(body: string): KbsErrorInfo {
  try {
    const j = JSON.parse(body) as KbsErrorInfo;
    if (j && typeof j === "object" && (typeof j.type === "string" || typeof j.detail === "string")) {
      const str = (x: unknown) => (typeof x === "string" ? printable(x, 500) : undefined);
      return { type: str(j.type), detail: str(j.detail) };
    }
  } catch {}
  const excerpt = printable(body.trim().replace(/\s+/g, " "));
  return excerpt ? { detail: excerpt } : {};
}

/** What to check next for each transport failure. */
function hintFor(failure: HttpFailure, ca: string | undefined): string {
  switch (failure.kind) {
    case "certificate":
      if (failure.clock) {
        return "check this machine's clock first (no or wrong RTC, a restored snapshot: sync it by NTP), then the dates of the broker's certificates. Not retried: the clock does not correct itself between attempts";
      }
      return `the broker's TLS certificate is not trusted: set kbs_root_cert to the PEM of the CA that issued it${ca ? "" : " (or add that CA to the system bundle)"}, and check the clock (an expired or not yet valid certificate fails the same way). Not retried: a certificate that fails once fails every time`;
    case "tls":
      return "does the broker speak TLS on this port (https:// vs http://)?";
    case "redirect":
      return `a key broker must be addressed directly, not through redirects: if ${failure.location} really is your broker, set kbs_url to it`;
    case "too-large":
      return "a KBS reply to this step is small; a larger one is a wrong endpoint or a hostile network, and is not read";
    default:
      return "is the key broker up and reachable from this machine (network, address, port)?";
  }
}

/** Send with retries. Returns the first non-5xx reply (body read, capped); throws KbsError. */
export async function kbsFetch(req: KbsRequest, ctx: HttpContext): Promise<ExchangeReply> {
  return withRetry(
    ctx.retry,
    async (timeoutMs) => {
      ctx.onRequest?.(req.step);
      let reply: ExchangeReply;
      const cookie = req.jar?.header(req.url);
      try {
        reply = await exchange({
          method: req.method,
          url: req.url,
          headers: {
            ...(req.body === undefined ? {} : { "content-type": "application/json" }),
            ...(cookie === undefined ? {} : { cookie }),
            ...req.headers,
          },
          body: req.body,
          ca: ctx.ca,
          timeoutMs,
          maxBodyBytes: KBS_REPLY_MAX_BYTES[req.step],
        });
      } catch (cause) {
        if (!(cause instanceof HttpFailure)) throw cause;
        throw new KbsError(req.step, req.url, `could not be completed: ${cause.message}`, {
          cause,
          retryable: cause.retryable,
          hint: hintFor(cause, ctx.ca),
        });
      }
      // A load balancer sets its affinity cookie on any reply, errors included.
      req.jar?.store(req.url, reply.headers.getSetCookie());
      if (reply.status >= 500) {
        throw new KbsError(req.step, req.url, "failed", {
          status: reply.status,
          info: errorInfo(text(reply.body)),
          retryable: true,
        });
      }
      return reply;
    },
    {
      deadline: ctx.deadline,
      isOwn: (err): err is KbsError => err instanceof KbsError,
      retryable: (err) => err.retryable,
      describe: (err) => `kbs: ${req.step} request to ${req.url} ${err.reason}`,
      giveUp: (err, n) =>
        new KbsError(req.step, req.url, `gave up after ${n} attempt${n > 1 ? "s" : ""}: ${err.reason}`, {
          cause: err.cause,
          hint: err.hint ?? "the key broker kept failing; check its logs",
        }),
    },
  );
}
