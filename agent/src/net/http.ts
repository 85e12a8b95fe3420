/**
 * One HTTP exchange with a key service (KBS, Alibaba KMS/STS/IMDS), shared by every network key
 * provider so they fail alike; net/retry.ts classifies its failures and retries it. The host owns
 * the network: a reply is attacker-controlled until checked, so every exchange has one deadline
 * covering connect, headers AND body, every body is read as a stream up to a per-endpoint cap,
 * redirects are refused and certificate failures are final (a MITM does not get better by retrying).
 */
import { printable } from "../escape.ts";
import { certificateTimeMessage } from "./cert-time.ts";
import { classify, HttpFailure } from "./retry.ts";

/** Cap for JSON/protobuf control replies (KBS /auth, /attest; KMS, STS, IMDS): 1 MiB. */
export const CONTROL_REPLY_MAX_BYTES = 1024 * 1024;

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
  return Buffer.concat(chunks, total);
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
    const failure = classify(cause);
    if (failure.clock) {
      const code = String((cause as { code?: unknown }).code);
      const message = await certificateTimeMessage(code, req.url, req.ca, req.timeoutMs);
      throw new HttpFailure("certificate", message, { cause, clock: true });
    }
    throw failure;
  } finally {
    clearTimeout(timer);
  }
}

export function text(body: Uint8Array): string {
  return new TextDecoder().decode(body);
}
