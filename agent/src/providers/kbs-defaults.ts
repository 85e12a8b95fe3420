/**
 * The kbs provider's retry defaults, in a module of their own: config/providers/kbs.ts takes its kbs
 * defaults (retry_attempts, retry_timeout_secs, request_timeout_secs) from here, and `config check`
 * must not load the HTTP client to validate a file (cli/startup.test.ts).
 */
import type { RetryPolicy } from "../net/http.ts";

/**
 * One exchange's timeout (request_timeout_secs): 60 s, guest-components' KBS client default. A cold
 * trustee verifier fetches DCAP/KDS collateral before it answers /attest, which can take ~40 s.
 */
export const KBS_REQUEST_TIMEOUT_MS = 60_000;

/**
 * Survives a key broker that comes up ~30 s after the guest: waits of ~1, 2, 4, 8, 10, 10 ... s
 * (times 0.5-1 jitter) reach well past a minute within 15 attempts.
 */
export const DEFAULT_RETRY: RetryPolicy = {
  attempts: 15,
  totalTimeoutMs: 180_000,
  requestTimeoutMs: KBS_REQUEST_TIMEOUT_MS,
  baseDelayMs: 1_000,
  maxDelayMs: 10_000,
};
