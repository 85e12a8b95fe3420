/**
 * Trustee KBS client, RCAR protocol 0.4.0: POST /auth (Request) -> Challenge + kbs-session-id
 * cookie; POST /attest with runtime data {nonce, tee-pubkey} bound into the TEE evidence ->
 * attestation token; GET /resource/<repo>/<type>/<tag> -> JWE encrypted to the TEE key.
 * Trustee answers every attestation-service failure with 401, transient ones included (slow or
 * rate-limited collateral fetches), so a 401 at /auth or /attest restarts the whole handshake a
 * bounded number of times, as guest-components' RCAR client does; a 401/403 at /resource with a
 * live session is a policy answer and final. Every cookie the broker or a load balancer in front
 * of it sets is kept for the session (net/cookies.ts), so replica affinity holds.
 * In passport mode the attestation runs against `attestUrl` and the resource KBS gets the
 * token as a Bearer credential. Sessions are cached per process, keyed by KBS URL + TEE, so the
 * rootfs and delta keys of one boot cost one attestation.
 */
import { createHash } from "node:crypto";
import { decodeJwt, type FlattenedJWE } from "jose";
import { type SelectOptions, selectAttester } from "../attest/index.ts";
import { log } from "../log.ts";
import { CookieJar } from "../net/cookies.ts";
import { type ExchangeReply, text } from "../net/http.ts";
import { backoffDelay, type RetryPolicy } from "../net/retry.ts";
import { canonicalJson } from "./canonical.ts";
import { KbsError, type KbsStep } from "./errors.ts";
import { errorInfo, type HttpContext, kbsFetch, systemCaBundle } from "./http.ts";
import { decryptResource, generateTeeKeyPair, type TeeKeyAlgorithm, type TeeKeyPair } from "./keypair.ts";

export const KBS_PROTOCOL_VERSION = "0.4.0";
export const SESSION_COOKIE = "kbs-session-id";
/**
 * Handshakes (auth + attest) per session when /auth or /attest answers 401: guest-components'
 * RCAR_MAX_ATTEMPT. Waits between them follow the retry policy's backoff, and the key fetch's
 * overall deadline (retry_timeout_secs) still bounds them.
 */
export const RCAR_HANDSHAKE_ATTEMPTS = 5;
/** 401 answers that mean "no valid session/token" (not a policy or resource answer). */
const SESSION_ERRORS = new Set([undefined, "TokenNotFound", "TokenVerifierError"]);
const HASH_NAMES: Record<string, string> = { sha256: "sha256", sha384: "sha384", sha512: "sha512" };

export interface KbsClientConfig {
  /** KBS that serves the resource (scheme://host[:port], no /kbs/v0). */
  url: string;
  /** Passport mode: the KBS that runs RCAR and issues the token; default: `url`. */
  attestUrl?: string;
  /** Forced TEE (`tee` setting); otherwise auto-detected. */
  tee?: string;
  /** PEM trust anchors (kbs_root_cert contents); default: the system trust store. */
  ca?: string;
  retry: RetryPolicy;
  keyAlgorithm?: TeeKeyAlgorithm;
  /** Where to look for TEE devices (tests point it at fake trees). */
  attestation?: Omit<SelectOptions, "tee">;
  onRequest?: (step: KbsStep) => void;
}

interface Session {
  /** Every cookie of the handshake (session id, load-balancer affinity), for the resource requests. */
  jar: CookieJar;
  /** Where the session cookie is checked (the attestation KBS's /resource path). */
  resourceUrl: string;
  token: string;
  tokenExpires: number;
  key: TeeKeyPair;
}

const sessions = new Map<string, Promise<Session>>();

/** Forget cached sessions (tests; a new boot is a new process anyway). */
export function clearKbsSessions(): void {
  sessions.clear();
}

function base(url: string): string {
  return url.replace(/\/+$/, "");
}

function sessionKey(cfg: KbsClientConfig): string {
  return [base(cfg.attestUrl ?? cfg.url), cfg.tee ?? "auto", cfg.keyAlgorithm ?? "", cfg.ca ?? ""].join("|");
}

/** Seconds of slack so a session is not used right as it expires. */
const EXPIRY_MARGIN_MS = 10_000;

function usable(s: Session, passport: boolean): boolean {
  const now = Date.now() + EXPIRY_MARGIN_MS;
  if (passport) return s.tokenExpires > now;
  return (s.jar.expiry(s.resourceUrl, SESSION_COOKIE) ?? 0) > now;
}

function readJson(step: KbsStep, url: string, res: ExchangeReply, what: string): Record<string, unknown> {
  const body = text(res.body);
  try {
    const j = JSON.parse(body);
    if (j && typeof j === "object" && !Array.isArray(j)) return j;
  } catch {}
  throw new KbsError(step, url, `returned a body that is not a JSON ${what}`, {
    status: res.status,
    info: { detail: JSON.stringify(body.slice(0, 120)) },
    hint: "is the URL a Trustee KBS (RCAR protocol 0.4.0)?",
  });
}

function refused(step: KbsStep, url: string, res: ExchangeReply): KbsError {
  const info = errorInfo(text(res.body));
  const variant = info.type?.split("/").pop();
  let hint: string | undefined;
  if (variant === "PolicyDeny")
    hint = "the KBS resource policy does not release this resource to this TEE/measurement";
  else if (res.status === 404) hint = "check the KBS URL and the resource path";
  else if (step !== "resource")
    hint = "the KBS rejected the attestation; check its attestation-service logs and reference values";
  return new KbsError(step, url, "was refused", { status: res.status, info, hint });
}

type Attester = Awaited<ReturnType<typeof selectAttester>>;

/** A 401 from /auth or /attest: trustee's answer to any attestation-service failure, maybe transient. */
function handshakeRefusal(err: unknown): err is KbsError {
  return err instanceof KbsError && err.status === 401 && err.step !== "resource";
}

/**
 * Runs the handshake up to RCAR_HANDSHAKE_ATTEMPTS times while /auth or /attest answers 401, each
 * with a fresh nonce, evidence and cookie jar (nothing of a refused session is reused). Anything
 * else (transport failures after their own retries, malformed replies, 403/404) is final.
 */
async function attest(cfg: KbsClientConfig, ctx: HttpContext): Promise<Session> {
  const attester = await selectAttester({ ...cfg.attestation, tee: cfg.tee });
  const key = await generateTeeKeyPair(cfg.keyAlgorithm);
  for (let n = 1; ; n++) {
    try {
      return await handshake(cfg, ctx, attester, key);
    } catch (err) {
      if (!handshakeRefusal(err)) throw err;
      const delay = backoffDelay(ctx.retry, n);
      if (n >= RCAR_HANDSHAKE_ATTEMPTS || Date.now() + delay >= ctx.deadline) {
        throw new KbsError(err.step, err.url, `was refused in each of ${n} handshake${n > 1 ? "s" : ""}`, {
          status: err.status,
          info: err.info,
          hint: err.hint,
        });
      }
      log.warn(
        `kbs: ${err.step} request to ${err.url} ${err.reason}; new handshake in ${(delay / 1000).toFixed(1)} s (${n + 1}/${RCAR_HANDSHAKE_ATTEMPTS})`,
      );
      await Bun.sleep(delay);
    }
  }
}

async function handshake(
  cfg: KbsClientConfig,
  ctx: HttpContext,
  attester: Attester,
  key: TeeKeyPair,
): Promise<Session> {
  const kbs = `${base(cfg.attestUrl ?? cfg.url)}/kbs/v0`;
  const jar = new CookieJar();
  const authUrl = `${kbs}/auth`;
  const resourceUrl = `${kbs}/resource/`;
  const authRes = await kbsFetch(
    {
      step: "auth",
      method: "POST",
      url: authUrl,
      jar,
      body: JSON.stringify({
        version: KBS_PROTOCOL_VERSION,
        tee: attester.tee,
        "extra-params": { "supported-hash-algorithms": Object.keys(HASH_NAMES) },
      }),
    },
    ctx,
  );
  if (authRes.status !== 200) throw refused("auth", authUrl, authRes);
  const challenge = readJson("auth", authUrl, authRes, "Challenge");
  if (typeof challenge.nonce !== "string" || challenge.nonce === "") {
    throw new KbsError("auth", authUrl, 'returned a Challenge without a "nonce"', { status: authRes.status });
  }
  if (jar.expiry(resourceUrl, SESSION_COOKIE) === undefined) {
    throw new KbsError("auth", authUrl, `returned no ${SESSION_COOKIE} cookie`, { status: authRes.status });
  }
  const extra = challenge["extra-params"];
  const selected =
    extra && typeof extra === "object"
      ? (extra as Record<string, unknown>)["selected-hash-algorithm"]
      : undefined;
  const hash = selected === undefined ? "sha384" : HASH_NAMES[String(selected)];
  if (!hash) throw new KbsError("auth", authUrl, `selected unsupported hash algorithm "${String(selected)}"`);

  // The KBS rebuilds exactly this object from the Attestation and hashes its JCS form (§1.7).
  const runtimeData = { "tee-pubkey": key.publicJwk, nonce: challenge.nonce, "additional-evidence": "" };
  const digest = new Uint8Array(createHash(hash).update(canonicalJson(runtimeData)).digest());
  const evidence = await attester.evidence(digest);

  const attestUrl = `${kbs}/attest`;
  const attestRes = await kbsFetch(
    {
      step: "attest",
      method: "POST",
      url: attestUrl,
      jar,
      body: JSON.stringify({
        "runtime-data": { nonce: challenge.nonce, "tee-pubkey": key.publicJwk },
        "tee-evidence": { primary_evidence: evidence, additional_evidence: "" },
      }),
    },
    ctx,
  );
  if (attestRes.status !== 200) throw refused("attest", attestUrl, attestRes);
  const body = readJson("attest", attestUrl, attestRes, "attestation result");
  if (typeof body.token !== "string") {
    throw new KbsError("attest", attestUrl, 'returned no "token"', { status: attestRes.status });
  }
  let tokenExpires = Number.POSITIVE_INFINITY;
  try {
    const exp = decodeJwt(body.token).exp;
    if (exp !== undefined) tokenExpires = exp * 1000;
  } catch {
    // Background-check mode does not need to read the token; passport mode fails at the resource KBS.
  }
  log.info(`kbs: attested to ${base(cfg.attestUrl ?? cfg.url)} as ${attester.tee}`);
  return { jar, resourceUrl, token: body.token, tokenExpires, key };
}

async function session(cfg: KbsClientConfig, ctx: HttpContext, fresh: boolean): Promise<Session> {
  const k = sessionKey(cfg);
  const passport = isPassport(cfg);
  const cached = sessions.get(k);
  if (cached && !fresh) {
    const s = await cached.catch(() => undefined);
    if (s && usable(s, passport)) return s;
  }
  const p = attest(cfg, ctx);
  sessions.set(k, p);
  p.catch(() => sessions.get(k) === p && sessions.delete(k));
  return p;
}

function isPassport(cfg: KbsClientConfig): boolean {
  return cfg.attestUrl !== undefined && base(cfg.attestUrl) !== base(cfg.url);
}

function isJwe(j: Record<string, unknown>): boolean {
  return ["protected", "iv", "ciphertext", "tag"].every((f) => typeof j[f] === "string");
}

/** Fetch and decrypt one resource ("repo/type/tag"). */
export async function getKbsResource(cfg: KbsClientConfig, path: string): Promise<Uint8Array> {
  const ctx: HttpContext = {
    retry: cfg.retry,
    deadline: Date.now() + cfg.retry.totalTimeoutMs,
    ca: cfg.ca ?? systemCaBundle(),
    onRequest: cfg.onRequest,
  };
  const url = `${base(cfg.url)}/kbs/v0/resource/${path}`;
  const passport = isPassport(cfg);
  for (let round = 0; ; round++) {
    const s = await session(cfg, ctx, round > 0);
    const headers: Record<string, string> = passport ? { authorization: `Bearer ${s.token}` } : {};
    const res = await kbsFetch({ step: "resource", method: "GET", url, headers, jar: s.jar }, ctx);
    if (res.status !== 200) {
      const err = refused("resource", url, res);
      // A session the KBS forgot (expired, restarted) is renewed once; policy and resource answers are final.
      if (res.status === 401 && SESSION_ERRORS.has(err.kbsType) && round === 0) {
        log.warn(`kbs: resource request to ${url} ${err.reason}; attesting again`);
        continue;
      }
      throw err;
    }
    const jwe = readJson("resource", url, res, "Web Encryption (JWE) object");
    if (!isJwe(jwe)) {
      throw new KbsError(
        "resource",
        url,
        "returned JSON that is not a flattened JWE (protected, iv, ciphertext, tag)",
        {
          status: res.status,
        },
      );
    }
    try {
      return await decryptResource(jwe as unknown as FlattenedJWE, s.key);
    } catch (cause) {
      throw new KbsError(
        "resource",
        url,
        `returned a JWE this client cannot decrypt (${(cause as Error).message})`,
        {
          status: res.status,
          cause,
          hint: "the KBS must encrypt the resource to the tee-pubkey of this session (A256GCM with ECDH-ES+A256KW or RSA-OAEP-256)",
        },
      );
    }
  }
}
