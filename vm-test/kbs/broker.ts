/**
 * A test key broker that speaks Trustee's KBS protocol (RCAR 0.4.0) the way trustee implements
 * it: sessions behind a `kbs-session-id` cookie with an expiry, the exact protocol-version check,
 * the nonce check, the runtime-data binding check (SHA-384 over the JCS of
 * {tee-pubkey, nonce, additional-evidence}, placed per TEE), an ES256 attestation token, a
 * resource store behind an allow/deny policy, trustee's error bodies and status codes, and
 * resources returned as a flattened JWE encrypted to the session's TEE key.
 *
 * What it cannot do offline: verify TDX/SNP signatures (DCAP/KDS collateral). For those TEEs it
 * checks the REPORTDATA binding only, and only when the TEE is listed in `allowTees`. TPM quotes
 * are verified in full with tpm2_checkquote (the AK itself is trusted on first use, as trustee's
 * `trusted_ak` reference value would pin it).
 * Fault switches let tests exercise the client's failure paths. Listens on 127.0.0.1 only.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { exportJWK, FlattenedEncrypt, generateKeyPair, importJWK, type JWK, jwtVerify, SignJWT } from "jose";
import { verifyTpmEvidence } from "../../agent/testkit/checkquote.ts";
import { type AaelCondition, type AaelEntry, aaelMatches, verifyAael } from "./aael.ts";

const ERROR_PREFIX = "https://github.com/confidential-containers/kbs/errors/";
const COOKIE = "kbs-session-id";
const KNOWN_TEES = [
  "az-snp-vtpm",
  "az-tdx-vtpm",
  "nvidia",
  "sgx",
  "snp",
  "tdx",
  "cca",
  "csv",
  "se",
  "hygondcu",
  "tpm",
  "sample",
  "sampledevice",
];

export interface PolicyRule {
  /** Resource path pattern; "*" matches one segment or a suffix ("default/key/*"). */
  resource: string;
  tee?: string[];
  /** AAEL entries the evidence must carry (aael.ts aaelMatches), e.g. the configuration hash. */
  aael?: AaelCondition;
  effect: "allow" | "deny";
}

export interface Policy {
  default: "allow" | "deny";
  rules: PolicyRule[];
}

export const ALLOW_ALL: Policy = { default: "allow", rules: [] };
export const DENY_ALL: Policy = { default: "deny", rules: [] };

/** How long a cold trustee verifier can take to answer /attest (collateral fetch): the slow-attest fault. */
export const COLD_VERIFIER_ATTEST_MS = 40_000;

/** Default name of the affinity cookie of the load-balancer fault (HAProxy-style). */
export const AFFINITY_COOKIE = "lb-affinity";

export interface Faults {
  /** Delay every response by this many ms. */
  slowMs: number;
  /** Delay /attest replies only (a cold verifier; COLD_VERIFIER_ATTEST_MS in the VM scenario). */
  slowAttestMs: number;
  /**
   * The next N /attest requests get trustee's 401 for an attestation-service failure (a slow or
   * rate-limited DCAP/KDS collateral fetch), session and evidence notwithstanding.
   */
  transient401Attest: number;
  /**
   * A load balancer in front of several replicas with in-memory sessions: every reply without
   * this cookie sets it (Path=/kbs, Max-Age), and a request without it reaches another replica,
   * which knows no session ("session not found" at /attest, TokenNotFound at /resource).
   */
  affinityCookie?: string;
  /** The next N requests get a 503. */
  fail5xx: number;
  /** This endpoint answers 200 with a body that is not JSON. */
  malformed?: "auth" | "attest" | "resource";
  /** Encrypt resources to a key that is not the session's. */
  wrongJweKey: boolean;
}

export interface BrokerOptions {
  port?: number;
  resources?: Record<string, Uint8Array>;
  policy?: Policy;
  /** TEEs whose evidence is accepted (default: sample, tdx, snp, tpm). */
  allowTees?: string[];
  /** Session (cookie) lifetime; trustee's default is 5 minutes. */
  sessionTtlMs?: number;
  tokenTtlMs?: number;
  tls?: { cert: string; key: string };
  /** ES256 key pair that signs tokens; pass the same one to a second broker for passport mode. */
  tokenKey?: CryptoKeyPair;
  /** Public keys whose tokens are accepted as Bearer credentials (always includes our own). */
  trustedTokenKeys?: CryptoKey[];
  faults?: Partial<Faults>;
}

interface Session {
  tee: string;
  nonce: string;
  expires: number;
  attested?: { token: string; teePubKey: JWK; aael: AaelEntry[] };
}

export interface Broker {
  url: string;
  port: number;
  faults: Faults;
  policy: Policy;
  resources: Map<string, Uint8Array>;
  tokenKey: CryptoKeyPair;
  /** Requests per endpoint ("auth", "attest", "resource", "other") and successful attestations. */
  stats: Record<string, number>;
  /** Every resource request: its path and the HTTP status answered (e.g. 401 for a policy denial). */
  resourceLog: { path: string; status: number }[];
  /** Drop every session, as a restarted KBS would. */
  forgetSessions(): void;
  stop(): Promise<void>;
}

class KbsHttpError extends Error {
  constructor(
    readonly status: number,
    readonly variant: string,
    detail: string,
  ) {
    super(detail);
  }
}

/** trustee maps everything but path errors to 401 (upstream kbs/src/error.rs). */
const deny = (variant: string, detail: string) => new KbsHttpError(401, variant, detail);

function canonical(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  const o = value as Record<string, unknown>;
  return `{${Object.keys(o)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
    .join(",")}}`;
}

/** Deserialize tee-pubkey into trustee's TeePubKey shape: unknown members are dropped. */
function teePubKey(raw: unknown): JWK {
  const k = (raw ?? {}) as Record<string, unknown>;
  const str = (f: string) => {
    if (typeof k[f] !== "string")
      throw deny("AttestationError", `RCAR handshake Attest failed: tee-pubkey lacks "${f}"`);
    return k[f] as string;
  };
  if (k.kty === "EC") return { kty: "EC", crv: str("crv"), alg: str("alg"), x: str("x"), y: str("y") };
  if (k.kty === "RSA") return { kty: "RSA", alg: str("alg"), n: str("n"), e: str("e") };
  throw deny("AttestationError", `RCAR handshake Attest failed: unsupported tee-pubkey kty ${String(k.kty)}`);
}

function pad(d: Uint8Array, n: number): Buffer {
  const out = Buffer.alloc(n);
  Buffer.from(d).copy(out, 0, 0, Math.min(n, d.length));
  return out;
}

/** REPORTDATA binding per TEE, as trustee's verifiers compare it. */
async function checkBinding(tee: string, evidence: unknown, digest: Uint8Array): Promise<void> {
  const ev = (evidence ?? {}) as Record<string, unknown>;
  const fail = (why: string) => {
    throw deny("AttestationError", `RCAR handshake Attest failed: ${tee} evidence: ${why}`);
  };
  if (tee === "sample") {
    if (typeof ev.report_data !== "string") fail("no report_data");
    if (!Buffer.from(ev.report_data as string, "base64").equals(Buffer.from(digest)))
      fail("report_data does not match the runtime data digest");
  } else if (tee === "tdx") {
    if (typeof ev.quote !== "string") fail("no quote");
    const q = Buffer.from(ev.quote as string, "base64");
    const version = q.readUInt16LE(0);
    const body = version === 4 ? 48 : version === 5 ? 54 : fail(`quote version ${version}`);
    if (!q.subarray((body as number) + 520, (body as number) + 584).equals(pad(digest, 64)))
      fail("REPORTDATA does not match");
  } else if (tee === "snp") {
    const r = ev.attestation_report as Record<string, unknown> | undefined;
    if (!r || !Array.isArray(r.report_data)) fail("no attestation_report.report_data");
    if (r!.vmpl !== 0) fail(`vmpl is ${String(r!.vmpl)}, expected 0`);
    if (!Buffer.from(r!.report_data as number[]).equals(pad(digest, 64))) fail("report_data does not match");
  } else if (tee === "tpm") {
    // tpm2_checkquote (tpm2-tools) verifies each quote's signature with the AK, the PCR values
    // against the quoted digest, and the nonce (first 32 bytes of the digest).
    try {
      await verifyTpmEvidence(evidence, digest);
    } catch (e) {
      fail((e as Error).message);
    }
  } else {
    fail("this test broker cannot check this TEE's evidence");
  }
}

function segmentMatch(pattern: string, path: string): boolean {
  if (pattern === "*") return true;
  if (pattern.endsWith("/*")) return path.startsWith(pattern.slice(0, -1));
  return pattern === path;
}

export function evaluatePolicy(
  policy: Policy,
  resource: string,
  tee: string,
  aael: readonly AaelEntry[] = [],
): { allow: boolean; why: string } {
  for (const [i, rule] of policy.rules.entries()) {
    if (
      segmentMatch(rule.resource, resource) &&
      (!rule.tee || rule.tee.includes(tee)) &&
      aaelMatches(rule.aael, aael)
    ) {
      return { allow: rule.effect === "allow", why: `rule ${i + 1} (${rule.effect} ${rule.resource})` };
    }
  }
  return { allow: policy.default === "allow", why: `default ${policy.default}` };
}

export async function startBroker(options: BrokerOptions = {}): Promise<Broker> {
  const sessions = new Map<string, Session>();
  const resources = new Map(Object.entries(options.resources ?? {}));
  const tokenKey = options.tokenKey ?? (await generateKeyPair("ES256", { extractable: true }));
  const trusted = [tokenKey.publicKey, ...(options.trustedTokenKeys ?? [])];
  const allowTees = options.allowTees ?? ["sample", "tdx", "snp", "tpm"];
  const sessionTtl = options.sessionTtlMs ?? 5 * 60_000;
  const tokenTtl = options.tokenTtlMs ?? 5 * 60_000;
  const stats: Record<string, number> = { auth: 0, attest: 0, resource: 0, other: 0, attestations: 0 };
  const resourceLog: Broker["resourceLog"] = [];
  const broker = {
    faults: {
      slowMs: 0,
      slowAttestMs: 0,
      transient401Attest: 0,
      fail5xx: 0,
      wrongJweKey: false,
      ...options.faults,
    } as Faults,
    policy: options.policy ?? ALLOW_ALL,
  };

  const cookieOf = (req: Request, name = COOKIE) =>
    req.headers
      .get("cookie")
      ?.split(";")
      .map((c) => c.trim().split("="))
      .find(([k]) => k === name)?.[1];

  // The replica this broker plays behind the load-balancer fault.
  const replica = `replica-${randomBytes(4).toString("hex")}`;
  const otherReplica = (req: Request) =>
    broker.faults.affinityCookie !== undefined && cookieOf(req, broker.faults.affinityCookie) !== replica;

  const liveSession = (req: Request): Session | undefined => {
    if (otherReplica(req)) return undefined;
    const id = cookieOf(req);
    const s = id ? sessions.get(id) : undefined;
    if (s && s.expires < Date.now()) {
      sessions.delete(id!);
      return undefined;
    }
    return s;
  };

  const setCookie = (id: string, s: Session) =>
    `${COOKIE}=${id}; Expires=${new Date(s.expires).toUTCString()}`;

  async function readBody(req: Request, what: string): Promise<Record<string, unknown>> {
    try {
      const j = await req.json();
      if (j && typeof j === "object") return j as Record<string, unknown>;
    } catch {}
    throw deny("AttestationError", `RCAR handshake ${what} failed: invalid JSON body`);
  }

  async function auth(req: Request): Promise<Response> {
    const body = await readBody(req, "Auth");
    if (body.version !== "0.4.0") {
      throw deny(
        "AttestationError",
        `RCAR handshake Auth failed: KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is ${String(body.version)}`,
      );
    }
    if (typeof body.tee !== "string" || !KNOWN_TEES.includes(body.tee)) {
      throw deny("AttestationError", `RCAR handshake Auth failed: unknown tee ${String(body.tee)}`);
    }
    const id = randomUUID().replaceAll("-", "");
    const s: Session = {
      tee: body.tee,
      nonce: randomBytes(32).toString("base64"),
      expires: Date.now() + sessionTtl,
    };
    sessions.set(id, s);
    return Response.json(
      { nonce: s.nonce, "extra-params": "" },
      { headers: { "set-cookie": setCookie(id, s) } },
    );
  }

  async function attest(req: Request): Promise<Response> {
    const id = cookieOf(req);
    const s = liveSession(req);
    if (!id || !s)
      throw deny("AttestationError", "RCAR handshake Attest failed: session not found or expired");
    if (s.attested) {
      return Response.json({ token: s.attested.token }, { headers: { "set-cookie": setCookie(id, s) } });
    }
    const body = await readBody(req, "Attest");
    const rd = (body["runtime-data"] ?? {}) as Record<string, unknown>;
    if (rd.nonce !== s.nonce) {
      throw deny(
        "AttestationError",
        "RCAR handshake Attest failed: the nonce in the handshake session is different from the one in the runtime data",
      );
    }
    const pk = teePubKey(rd["tee-pubkey"]);
    const te = (body["tee-evidence"] ?? {}) as Record<string, unknown>;
    const additional = typeof te.additional_evidence === "string" ? te.additional_evidence : "";
    const runtimeData = { "tee-pubkey": pk, nonce: s.nonce, "additional-evidence": additional };
    const digest = new Uint8Array(createHash("sha384").update(canonical(runtimeData)).digest());
    if (!allowTees.includes(s.tee)) {
      throw deny(
        "AttestationError",
        `RCAR handshake Attest failed: evidence of TEE ${s.tee} is not accepted by this broker`,
      );
    }
    await checkBinding(s.tee, te.primary_evidence, digest);
    // The AA event log must replay against the registers the evidence proves (aael.ts).
    let aael: AaelEntry[];
    try {
      aael = verifyAael(s.tee, te.primary_evidence);
    } catch (e) {
      throw deny(
        "AttestationError",
        `RCAR handshake Attest failed: ${s.tee} evidence: ${(e as Error).message}`,
      );
    }
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({
      eat_profile: "tag:github.com,2024:confidential-containers/Trustee",
      submods: {
        cpu0: {
          "ear.status": "affirming",
          "ear.veraison.annotated-evidence": {
            [s.tee]: { aael },
            runtime_data_claims: { "tee-pubkey": pk, nonce: s.nonce },
          },
        },
      },
    })
      .setProtectedHeader({ alg: "ES256", typ: "JWT", jwk: await exportJWK(tokenKey.publicKey) })
      .setIssuedAt(now)
      .setExpirationTime(now + Math.round(tokenTtl / 1000))
      .setIssuer("cryptpilot-test-kbs")
      .sign(tokenKey.privateKey);
    s.attested = { token, teePubKey: pk, aael };
    stats.attestations!++;
    return Response.json({ token }, { headers: { "set-cookie": setCookie(id, s) } });
  }

  async function bearer(
    req: Request,
  ): Promise<{ tee: string; teePubKey: JWK; aael: AaelEntry[] } | undefined> {
    const h = req.headers.get("authorization");
    if (!h?.startsWith("Bearer ")) return undefined;
    for (const key of trusted) {
      try {
        const { payload } = await jwtVerify(h.slice(7), key);
        const ae = (payload.submods as Record<string, Record<string, Record<string, unknown>>>).cpu0![
          "ear.veraison.annotated-evidence"
        ]!;
        const tee = Object.keys(ae).find((k) => k !== "runtime_data_claims") ?? "unknown";
        return {
          tee,
          teePubKey: teePubKey((ae.runtime_data_claims as Record<string, unknown>)["tee-pubkey"]),
          aael: ((ae[tee] as { aael?: AaelEntry[] } | undefined)?.aael ?? []) as AaelEntry[],
        };
      } catch {}
    }
    throw deny(
      "TokenVerifierError",
      "Token verification failed: the bearer token is not signed by a trusted key or has expired",
    );
  }

  async function resource(req: Request, path: string): Promise<Response> {
    if (req.method !== "GET") throw deny("AdminAuthAccess", "only GET is served to clients");
    const segs = path.split("/");
    if (segs.length !== 3 || !segs.every((x) => /^[A-Za-z0-9_-]+[A-Za-z0-9_.-]*$/.test(x))) {
      throw deny("PluginInternalError", `illegal ResourceDesc format: ${path}`);
    }
    const s = liveSession(req);
    const who = s?.attested
      ? { tee: s.tee, teePubKey: s.attested.teePubKey, aael: s.attested.aael }
      : await bearer(req);
    if (!who) throw deny("TokenNotFound", "Attestation Token not found");
    const decision = evaluatePolicy(broker.policy, path, who.tee, who.aael);
    if (!decision.allow) {
      throw deny(
        "PolicyDeny",
        `Resource policy denied access to ${path} for TEE ${who.tee} (${decision.why})`,
      );
    }
    const data = resources.get(path);
    if (!data) throw deny("PluginInternalError", `Plugin internal error: resource ${path} not found`);
    const alg = who.teePubKey.alg!;
    let key: CryptoKey | Uint8Array;
    if (broker.faults.wrongJweKey) {
      const other = await generateKeyPair(
        alg,
        alg.startsWith("RSA") ? { modulusLength: 2048 } : { crv: who.teePubKey.crv },
      );
      key = other.publicKey;
    } else {
      key = await importJWK(who.teePubKey, alg);
    }
    const jwe = await new FlattenedEncrypt(data).setProtectedHeader({ alg, enc: "A256GCM" }).encrypt(key);
    return Response.json(jwe);
  }

  async function answer(req: Request, path: string, step: string, m: RegExpExecArray | null) {
    try {
      if (path === "/healthz") return new Response("ok");
      if (!m || (step !== "resource" && req.method !== "POST")) {
        throw new KbsHttpError(404, "InvalidRequestPath", `invalid request path ${path}`);
      }
      if (step === "auth") return await auth(req);
      if (step === "attest") {
        if (broker.faults.slowAttestMs > 0) await Bun.sleep(broker.faults.slowAttestMs);
        if (broker.faults.transient401Attest > 0) {
          broker.faults.transient401Attest--;
          throw deny(
            "AttestationError",
            "RCAR handshake Attest failed: Verifier evaluate failed: fetching collateral: 429 Too Many Requests (injected fault)",
          );
        }
        return await attest(req);
      }
      return await resource(req, m[2] ?? "");
    } catch (e) {
      if (!(e instanceof KbsHttpError)) throw e;
      return Response.json({ type: ERROR_PREFIX + e.variant, detail: e.message }, { status: e.status });
    }
  }

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: options.port ?? 0,
    ...(options.tls ? { tls: options.tls } : {}),
    async fetch(req) {
      const path = new URL(req.url).pathname;
      const m = /^\/kbs\/v0\/(auth|attest|resource)(?:\/(.*))?$/.exec(path);
      const step = m?.[1] ?? "other";
      stats[step] = (stats[step] ?? 0) + 1;
      if (broker.faults.slowMs > 0) await Bun.sleep(broker.faults.slowMs);
      if (broker.faults.fail5xx > 0) {
        broker.faults.fail5xx--;
        return new Response("Service Unavailable (injected fault)", { status: 503 });
      }
      if (broker.faults.malformed === step) return new Response("<html>not json", { status: 200 });
      const res = await answer(req, path, step, m);
      if (step === "resource") resourceLog.push({ path: m?.[2] ?? "", status: res.status });
      const lb = broker.faults.affinityCookie;
      if (lb !== undefined && otherReplica(req)) {
        res.headers.append("set-cookie", `${lb}=${replica}; Path=/kbs; Max-Age=3600; HttpOnly`);
      }
      return res;
    },
  });
  const scheme = options.tls ? "https" : "http";
  return Object.assign(broker, {
    url: `${scheme}://127.0.0.1:${server.port}`,
    port: server.port!,
    resources,
    tokenKey,
    stats,
    resourceLog,
    forgetSessions: () => sessions.clear(),
    stop: () => server.stop(true),
  });
}
