import { describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AFFINITY_COOKIE,
  ALLOW_ALL,
  type Broker,
  COLD_VERIFIER_ATTEST_MS,
  DENY_ALL,
  startBroker,
} from "../../../vm-test/kbs/broker.ts";
import { makeDatedPki, makeTestPki } from "../../../vm-test/kbs/tls.ts";
import { canonicalJson } from "../../src/kbs/canonical.ts";
import {
  clearKbsSessions,
  getKbsResource,
  type KbsClientConfig,
  RCAR_HANDSHAKE_ATTEMPTS,
} from "../../src/kbs/client.ts";
import type { KbsError } from "../../src/kbs/errors.ts";
import { parseResourcePath } from "../../src/kbs/resource-uri.ts";
import { backoffDelay, KBS_RETRY, type RetryPolicy } from "../../src/net/retry.ts";
import { FAST_RETRY, rejection, stopsAfterEach } from "../../testkit/harness.ts";
import { DUMMY_TEE_PUBKEY, rcarAttest, rcarAuth, rcarPost, runtimeDataDigest } from "../../testkit/rcar.ts";
import { fakeTdxTsm } from "../attest/fake-tsm.ts";
import { fixture, haveFixtures } from "../attest/fixtures.ts";

const FAST: RetryPolicy = { ...FAST_RETRY, attempts: 5, baseDelayMs: 50, maxDelayMs: 200 };
const KEY = new TextEncoder().encode("rootfs passphrase \x00\xff binary");
const DELTA = new TextEncoder().encode("delta passphrase");
const text = (b: Uint8Array) => new TextDecoder().decode(b);

const stops = stopsAfterEach(clearKbsSessions);

async function broker(options: Parameters<typeof startBroker>[0] = {}): Promise<Broker> {
  const b = await startBroker({
    resources: { "default/key/rootfs": KEY, "default/key/delta": DELTA },
    ...options,
  });
  stops.push(() => b.stop());
  return b;
}

function cfg(b: { url: string }, extra: Partial<KbsClientConfig> = {}): KbsClientConfig {
  return { url: b.url, tee: "sample", retry: FAST, ...extra };
}

describe("wire details", () => {
  test("runtime data canonical form (RFC 8785) as the KBS hashes it", () => {
    const rd = {
      "tee-pubkey": { y: "Y", x: "X", kty: "EC", crv: "P-256", alg: "ECDH-ES+A256KW" },
      nonce: "N",
      "additional-evidence": "",
    };
    expect(canonicalJson(rd)).toBe(
      '{"additional-evidence":"","nonce":"N","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"X","y":"Y"}}',
    );
    expect(canonicalJson({ b: [1, "é\n", null, true], a: { d: 1.5, c: -0 } })).toBe(
      '{"a":{"c":0,"d":1.5},"b":[1,"é\\n",null,true]}',
    );
  });
  test("resource locations: kbs:/// URIs, host ignored, short form gets the default repository", () => {
    expect(parseResourcePath("kbs:///default/key/rootfs")).toBe("default/key/rootfs");
    expect(parseResourcePath("kbs://kbs.example:8080/repo/type/tag")).toBe("repo/type/tag");
    expect(parseResourcePath("key/rootfs")).toBe("default/key/rootfs");
    expect(parseResourcePath("/mine/key/v1.2")).toBe("mine/key/v1.2");
    expect(() => parseResourcePath("kbs:///a/b/c/d")).toThrow("<repository>/<type>/<tag>");
    expect(() => parseResourcePath("kbs+plugin:///a/b/c")).toThrow("must start with kbs://");
    expect(() => parseResourcePath("a/b c/d")).toThrow("not a resource path");
  });
  test("backoff doubles up to the cap, with jitter between half and full", () => {
    const p = { ...KBS_RETRY };
    expect([1, 2, 3, 4, 5, 6].map((a) => backoffDelay(p, a, () => 1))).toEqual([
      1000, 2000, 4000, 8000, 10000, 10000,
    ]);
    expect(backoffDelay(p, 3, () => 0)).toBe(2000);
    // The defaults keep trying for more than the 30 s a late broker needs, even with minimum jitter.
    let waited = 0;
    for (let a = 1; a < p.attempts; a++) waited += backoffDelay(p, a, () => 0);
    expect(waited).toBeGreaterThan(45_000);
    expect(p.totalTimeoutMs).toBeGreaterThan(60_000);
  });
});

describe("RCAR against the test broker", () => {
  test("sample TEE, EC key: auth, attest, resource; plaintext intact", async () => {
    const b = await broker();
    expect(await getKbsResource(cfg(b), "default/key/rootfs")).toEqual(KEY);
    expect(b.stats).toMatchObject({ auth: 1, attest: 1, resource: 1, attestations: 1 });
  });
  test("RSA-OAEP-256 TEE key", async () => {
    const b = await broker();
    expect(text(await getKbsResource(cfg(b, { keyAlgorithm: "RSA-OAEP-256" }), "default/key/delta"))).toBe(
      text(DELTA),
    );
  });
  test("one attestation per boot: rootfs and delta from the same KBS share the session (4 round trips)", async () => {
    const b = await broker();
    const c = cfg(b);
    const [a, d] = await Promise.all([
      getKbsResource(c, "default/key/rootfs"),
      getKbsResource(c, "default/key/delta"),
    ]);
    expect(a).toEqual(KEY);
    expect(d).toEqual(DELTA);
    await getKbsResource({ ...c, url: `${b.url}/` }, "default/key/delta");
    expect(b.stats).toMatchObject({ auth: 1, attest: 1, resource: 3, attestations: 1 });
  });
  test("a different KBS gets its own attestation", async () => {
    const b1 = await broker();
    const b2 = await broker();
    await getKbsResource(cfg(b1), "default/key/rootfs");
    await getKbsResource(cfg(b2), "default/key/delta");
    expect([b1.stats.attestations, b2.stats.attestations]).toEqual([1, 1]);
  });
  test("no TEE and no tee setting: clear error, nothing sent", async () => {
    const b = await broker();
    const e = await rejection<KbsError>(
      getKbsResource(
        {
          url: b.url,
          retry: FAST,
          attestation: {
            env: {},
            paths: { tsmRoot: "/nonexistent", sysRoot: mkdtempSync(join(tmpdir(), "sys-")) },
          },
        },
        "default/key/rootfs",
      ),
    );
    expect(e.message).toContain("no TEE found");
    expect(b.stats.auth).toBe(0);
  });
  test.skipIf(!haveFixtures)(
    "TDX evidence from a fake configfs-tsm passes the broker's REPORTDATA check",
    async () => {
      const quote = fixture("verifier/tdx/tdx_quote_4.dat");
      const tsm = await fakeTdxTsm(quote, "v4");
      const b = await broker({ allowTees: ["tdx"] });
      const c: KbsClientConfig = {
        url: b.url,
        retry: FAST,
        attestation: {
          env: {},
          fs: tsm.fs,
          paths: { tsmRoot: tsm.root, sysRoot: mkdtempSync(join(tmpdir(), "sys-")) },
        },
      };
      expect(await getKbsResource(c, "default/key/rootfs")).toEqual(KEY);
      expect(tsm.inblobs.length).toBe(1);
    },
  );
  test.skipIf(!haveFixtures)(
    "TDX quote with someone else's REPORTDATA is rejected by the broker",
    async () => {
      const quote = fixture("verifier/tdx/tdx_quote_4.dat");
      const b = await broker({ allowTees: ["tdx"] });
      // Bypasses the client's own check to prove the broker checks the binding too.
      const { cookie, nonce } = await rcarAuth(b.url, "tdx");
      const res = await rcarAttest(
        b.url,
        cookie,
        { nonce, teePubkey: DUMMY_TEE_PUBKEY },
        { cc_eventlog: null, quote: Buffer.from(quote).toString("base64") },
      );
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({
        type: "https://github.com/confidential-containers/kbs/errors/AttestationError",
        detail: "RCAR handshake Attest failed: tdx evidence: REPORTDATA does not match",
      });
    },
  );
});

describe("broker protocol checks (what trustee verifies)", () => {
  const post = (b: Broker, path: string, body: unknown, headers: Record<string, string> = {}) =>
    rcarPost(b.url, path, body, headers);
  test("protocol version must be exactly 0.4.0", async () => {
    const b = await broker();
    const res = await post(b, "auth", { version: "0.2.0", tee: "sample", "extra-params": "" });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { detail: string }).detail).toContain(
      "Protocol Version Mismatch: expect =0.4.0",
    );
  });
  test("session cookie, nonce and digest checks", async () => {
    const b = await broker();
    const auth = await post(b, "auth", { version: "0.4.0", tee: "sample", "extra-params": "" });
    const setCookie = auth.headers.get("set-cookie")!;
    expect(setCookie).toMatch(/^kbs-session-id=[0-9a-f]{32}; Expires=/);
    const { nonce } = (await auth.json()) as { nonce: string };
    expect(Buffer.from(nonce, "base64").length).toBe(32);
    const cookie = setCookie.split(";")[0]!;
    const pk = DUMMY_TEE_PUBKEY;
    const evidence = (d: string) => ({
      primary_evidence: { svn: "1", report_data: d },
      additional_evidence: "",
    });
    const noCookie = await post(b, "attest", {
      "runtime-data": { nonce, "tee-pubkey": pk },
      "tee-evidence": evidence(""),
    });
    expect(((await noCookie.json()) as { detail: string }).detail).toContain("session not found");
    const badNonce = await post(
      b,
      "attest",
      { "runtime-data": { nonce: "x", "tee-pubkey": pk }, "tee-evidence": evidence("") },
      { cookie },
    );
    expect(((await badNonce.json()) as { detail: string }).detail).toContain(
      "nonce in the handshake session is different",
    );
    const badDigest = await post(
      b,
      "attest",
      { "runtime-data": { nonce, "tee-pubkey": pk }, "tee-evidence": evidence("AAAA") },
      { cookie },
    );
    expect(((await badDigest.json()) as { detail: string }).detail).toContain("report_data does not match");
    // The digest the broker expects: SHA-384 of the canonical runtime data, extra JWK members dropped.
    const digest = Buffer.from(runtimeDataDigest(pk, nonce)).toString("base64");
    const ok = await post(
      b,
      "attest",
      {
        "runtime-data": { nonce, "tee-pubkey": { ...pk, kid: "dropped" } },
        "tee-evidence": evidence(digest),
      },
      { cookie },
    );
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { token: string }).token.split(".").length).toBe(3);
  });
});

describe("TLS", () => {
  const pkiDir = () => mkdtempSync(join(tmpdir(), "kbs-pki-"));
  test("kbs_root_cert pins the broker's CA", async () => {
    const pki = makeTestPki(pkiDir());
    const b = await broker({ tls: { cert: pki.certPem, key: pki.keyPem } });
    expect(b.url.startsWith("https://127.0.0.1:")).toBe(true);
    expect(await getKbsResource(cfg(b, { ca: pki.caPem }), "default/key/rootfs")).toEqual(KEY);
  });
  test("without kbs_root_cert the system store applies (SSL_CERT_FILE, as OpenSSL reads it)", async () => {
    const pki = makeTestPki(pkiDir());
    const b = await broker({ tls: { cert: pki.certPem, key: pki.keyPem } });
    const saved = process.env.SSL_CERT_FILE;
    process.env.SSL_CERT_FILE = pki.caPath;
    try {
      expect(await getKbsResource(cfg(b), "default/key/rootfs")).toEqual(KEY);
    } finally {
      if (saved === undefined) delete process.env.SSL_CERT_FILE;
      else process.env.SSL_CERT_FILE = saved;
    }
  });
  test("another CA, or the system store, does not trust the broker: TLS failure named, final at once", async () => {
    const pki = makeTestPki(pkiDir());
    const other = makeTestPki(pkiDir(), "some other CA");
    const b = await broker({ tls: { cert: pki.certPem, key: pki.keyPem } });
    const retry = { ...FAST, attempts: 3 };
    for (const ca of [other.caPem, undefined]) {
      let sent = 0;
      const e = await rejection<KbsError>(
        getKbsResource(cfg(b, { ca, retry, onRequest: () => sent++ }), "default/key/rootfs"),
      );
      expect(e.message).toContain(`auth request to ${b.url}/kbs/v0/auth`);
      expect(e.message).toContain("TLS certificate not trusted");
      expect(e.message).not.toContain("gave up");
      expect(e.hint).toContain("kbs_root_cert");
      expect(e.hint).toContain("clock");
      expect(sent).toBe(1);
      clearKbsSessions();
    }
    expect(b.stats.attestations).toBe(0);
  });
});

describe("TLS failures caused by the clock name the clock, not kbs_root_cert (#15)", () => {
  const YEAR = 365 * 86_400_000;
  const at = (iso: string) => new Date(iso);
  const cases = [
    {
      name: "expired server certificate",
      leaf: { notBefore: at("2020-01-01T00:00:00Z"), notAfter: at("2021-01-01T00:00:00Z") },
      ca: undefined,
      code: "CERT_HAS_EXPIRED",
      dates: "CN=127.0.0.1 is valid from 2020-01-01T00:00:00Z to 2021-01-01T00:00:00Z",
    },
    {
      name: "server certificate not yet valid",
      leaf: { notBefore: at("2090-01-01T00:00:00Z"), notAfter: at("2091-01-01T00:00:00Z") },
      ca: undefined,
      code: "CERT_NOT_YET_VALID",
      dates: "CN=127.0.0.1 is valid from 2090-01-01T00:00:00Z to 2091-01-01T00:00:00Z",
    },
    {
      name: "expired CA (kbs_root_cert) above a valid server certificate",
      leaf: { notBefore: new Date(Date.now() - YEAR), notAfter: new Date(Date.now() + YEAR) },
      ca: { notBefore: at("2019-06-01T00:00:00Z"), notAfter: at("2022-06-01T00:00:00Z") },
      code: "CERT_HAS_EXPIRED",
      dates: "CN=cryptpilot dated test CA is valid from 2019-06-01T00:00:00Z to 2022-06-01T00:00:00Z",
    },
  ];
  for (const c of cases) {
    test(`${c.name}: the guest clock and the certificate's dates, final at once`, async () => {
      const pki = makeDatedPki(c.leaf, c.ca);
      const b = await broker({ tls: { cert: pki.certPem, key: pki.keyPem } });
      let sent = 0;
      const e = await rejection<KbsError>(
        getKbsResource(cfg(b, { ca: pki.caPem, onRequest: () => sent++ }), "default/key/rootfs"),
      );
      expect(e.message).toContain(`auth request to ${b.url}/kbs/v0/auth could not be completed`);
      expect(e.message).toContain(`TLS certificate not valid at this machine's time (${c.code})`);
      expect(e.message).toMatch(/the guest clock says \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ; /);
      expect(e.message).toContain(`the certificate ${c.dates}`);
      expect(e.hint).toContain("clock");
      expect(e.hint).not.toContain("kbs_root_cert");
      expect(sent).toBe(1);
      expect(b.stats.auth).toBe(0);
    });
  }
});

describe("passport mode", () => {
  test("attest at one KBS, present the token as Bearer to another that has no session", async () => {
    const issuer = await broker({ resources: {} });
    const relying = await broker({ trustedTokenKeys: [issuer.tokenKey.publicKey] });
    const c = cfg(relying, { attestUrl: issuer.url });
    expect(await getKbsResource(c, "default/key/rootfs")).toEqual(KEY);
    expect(await getKbsResource(c, "default/key/delta")).toEqual(DELTA);
    expect(issuer.stats).toMatchObject({ auth: 1, attest: 1, resource: 0 });
    expect(relying.stats).toMatchObject({ auth: 0, attest: 0, resource: 2 });
  });
  test("a token from an untrusted issuer is refused with TokenVerifierError", async () => {
    const issuer = await broker({ resources: {} });
    const relying = await broker();
    const e = await rejection<KbsError>(
      getKbsResource(cfg(relying, { attestUrl: issuer.url }), "default/key/rootfs"),
    );
    expect(e.message).toContain("HTTP 401 TokenVerifierError");
  });
});

describe("fault modes", () => {
  test("broker down at start, up later: the client retries with backoff and succeeds", async () => {
    const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
    const port = probe.port!;
    probe.stop(true);
    const started = Date.now();
    const later = Bun.sleep(1200).then(() => broker({ port }));
    const key = await getKbsResource(
      {
        url: `http://127.0.0.1:${port}`,
        tee: "sample",
        retry: { ...FAST, attempts: 20, baseDelayMs: 100, maxDelayMs: 400 },
      },
      "default/key/rootfs",
    );
    expect(key).toEqual(KEY);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1200);
    expect((await later).stats.auth).toBe(1);
  });
  test("broker never comes up: bounded attempts, error names URL, step and the connection failure", async () => {
    const e = await rejection<KbsError>(
      getKbsResource(
        { url: "http://127.0.0.1:9", tee: "sample", retry: { ...FAST, attempts: 3 } },
        "default/key/rootfs",
      ),
    );
    expect(e.message).toContain("auth request to http://127.0.0.1:9/kbs/v0/auth gave up after 3 attempts");
    expect(e.message).toMatch(/ConnectionRefused|ECONNREFUSED|refused/i);
    expect(e.hint).toContain("reachable");
  });
  test("total timeout bounds the retries even with attempts left", async () => {
    const started = Date.now();
    await rejection<KbsError>(
      getKbsResource(
        { url: "http://127.0.0.1:9", tee: "sample", retry: { ...FAST, attempts: 100, totalTimeoutMs: 600 } },
        "default/key/rootfs",
      ),
    );
    expect(Date.now() - started).toBeLessThan(2000);
  });
  test("5xx is retried: two 503s then success", async () => {
    const b = await broker({ faults: { fail5xx: 2 } });
    expect(await getKbsResource(cfg(b), "default/key/rootfs")).toEqual(KEY);
    expect(b.stats.auth).toBe(3);
  });
  test("persistent 5xx: the error carries the status and the body", async () => {
    const b = await broker({ faults: { fail5xx: 1000 } });
    const e = await rejection<KbsError>(
      getKbsResource(cfg(b, { retry: { ...FAST, attempts: 3 } }), "default/key/rootfs"),
    );
    expect(e.message).toContain(
      `auth request to ${b.url}/kbs/v0/auth gave up after 3 attempts: failed: HTTP 503`,
    );
    expect(e.message).toContain("Service Unavailable");
    expect(b.stats.auth).toBe(3);
  });
  test("slow broker: requests time out and are retried; a merely slow one still works", async () => {
    const b = await broker({ faults: { slowMs: 300 } });
    const e = await rejection<KbsError>(
      getKbsResource(
        cfg(b, { retry: { ...FAST, attempts: 2, requestTimeoutMs: 100 } }),
        "default/key/rootfs",
      ),
    );
    expect(e.message).toContain("timed out");
    expect(b.stats.auth).toBe(2);
    clearKbsSessions();
    expect(
      await getKbsResource(cfg(b, { retry: { ...FAST, requestTimeoutMs: 2000 } }), "default/key/rootfs"),
    ).toEqual(KEY);
  });
  for (const step of ["auth", "attest", "resource"] as const) {
    test(`malformed JSON from ${step}: not retried, message names the step`, async () => {
      const b = await broker({ faults: { malformed: step } });
      const e = await rejection<KbsError>(getKbsResource(cfg(b), "default/key/rootfs"));
      expect(e.message).toContain(`${step} request to ${b.url}/kbs/v0/${step}`);
      expect(e.message).toContain("not a JSON");
      expect(e.message).toContain('"<html>not json"');
      expect(b.stats[step]).toBe(1);
    });
  }
  test("resource encrypted to the wrong key: decryption error, no plaintext", async () => {
    const b = await broker({ faults: { wrongJweKey: true } });
    const e = await rejection<KbsError>(getKbsResource(cfg(b), "default/key/rootfs"));
    expect(e.message).toContain("returned a JWE this client cannot decrypt");
    expect(e.hint).toContain("tee-pubkey");
  });
  test("expired session cookie: the client re-attests instead of sending a stale cookie", async () => {
    const b = await broker({ sessionTtlMs: 11_000 });
    await getKbsResource(cfg(b), "default/key/rootfs");
    await Bun.sleep(1100);
    // 11 s TTL minus the client's 10 s margin: stale after ~1 s.
    await getKbsResource(cfg(b), "default/key/delta");
    expect(b.stats).toMatchObject({ auth: 2, attestations: 2 });
  });
  test("session forgotten by the broker (restart): one 401, one new attestation, success", async () => {
    const b = await broker();
    await getKbsResource(cfg(b), "default/key/rootfs");
    b.forgetSessions();
    expect(await getKbsResource(cfg(b), "default/key/delta")).toEqual(DELTA);
    expect(b.stats).toMatchObject({ auth: 2, resource: 3, attestations: 2 });
  });
  test("policy denial: no retry, the broker's reason in the message", async () => {
    const b = await broker({ policy: DENY_ALL });
    const e = await rejection<KbsError>(getKbsResource(cfg(b), "default/key/rootfs"));
    expect(e.message).toBe(
      `kbs key provider: resource request to ${b.url}/kbs/v0/resource/default/key/rootfs was refused: HTTP 401 PolicyDeny: Resource policy denied access to default/key/rootfs for TEE sample (default deny)`,
    );
    expect(e.hint).toContain("policy");
    expect(b.stats.resource).toBe(1);
  });
  test("per-resource policy and a missing resource", async () => {
    const b = await broker({
      policy: {
        default: "deny",
        rules: [{ resource: "default/key/delta", tee: ["sample"], effect: "allow" }],
      },
    });
    expect(await getKbsResource(cfg(b), "default/key/delta")).toEqual(DELTA);
    expect((await rejection<KbsError>(getKbsResource(cfg(b), "default/key/rootfs"))).kbsType).toBe(
      "PolicyDeny",
    );
    b.policy = ALLOW_ALL;
    const e = await rejection<KbsError>(getKbsResource(cfg(b), "default/key/nothere"));
    expect(e.message).toContain(
      "HTTP 401 PluginInternalError: Plugin internal error: resource default/key/nothere not found",
    );
    expect(b.stats.attestations).toBe(1);
  });
  for (const status of [401, 403, 404]) {
    // trustee's 401 may be transient (a verifier failure): the handshake is restarted, a bounded
    // number of times; 403 and 404 are final at once.
    const tries = status === 401 ? RCAR_HANDSHAKE_ATTEMPTS : 1;
    test(`HTTP ${status} at auth: ${tries} request(s), error names URL, step, status, KBS type and detail`, async () => {
      let requests = 0;
      const server = Bun.serve({
        hostname: "127.0.0.1",
        port: 0,
        fetch: () => {
          requests++;
          return Response.json(
            {
              type: "https://github.com/confidential-containers/kbs/errors/AttestationFailed",
              detail: "nope",
            },
            { status },
          );
        },
      });
      try {
        const url = `http://127.0.0.1:${server.port}`;
        const e = await rejection<KbsError>(getKbsResource(cfg({ url }), "default/key/rootfs"));
        const how = status === 401 ? `was refused in each of ${tries} handshakes` : "was refused";
        expect(e.message).toContain(
          `auth request to ${url}/kbs/v0/auth ${how}: HTTP ${status} AttestationFailed: nope`,
        );
        expect(e.status).toBe(status);
        expect(requests).toBe(tries);
      } finally {
        await server.stop(true);
      }
    });
  }
  test("wrong URL path: 404 InvalidRequestPath, not retried", async () => {
    const b = await broker();
    const e = await rejection<KbsError>(
      getKbsResource(cfg(b, { url: `${b.url}/prefix` }), "default/key/rootfs"),
    );
    expect(e.message).toContain("HTTP 404 InvalidRequestPath");
    expect(e.hint).toContain("URL");
    expect(b.stats.other).toBe(1);
  });
});

describe("trustee behaviour (#15): handshake restarts, affinity cookies, slow verifiers", () => {
  test("transient 401 at /attest (verifier failure): the whole handshake is restarted and succeeds", async () => {
    const b = await broker({ faults: { transient401Attest: 2 } });
    expect(await getKbsResource(cfg(b), "default/key/rootfs")).toEqual(KEY);
    // Each restart is a new /auth (fresh nonce and session), not a replay of /attest.
    expect(b.stats).toMatchObject({ auth: 3, attest: 3, resource: 1, attestations: 1 });
  });
  test(`401 at /attest that never clears: ${RCAR_HANDSHAKE_ATTEMPTS} handshakes, then one error with the broker's reason`, async () => {
    const b = await broker({ faults: { transient401Attest: 1000 } });
    const e = await rejection<KbsError>(getKbsResource(cfg(b), "default/key/rootfs"));
    expect(e.message).toContain(
      `attest request to ${b.url}/kbs/v0/attest was refused in each of ${RCAR_HANDSHAKE_ATTEMPTS} handshakes: HTTP 401 AttestationError: RCAR handshake Attest failed: Verifier evaluate failed`,
    );
    expect(e.hint).toContain("attestation-service logs");
    expect(b.stats).toMatchObject({
      auth: RCAR_HANDSHAKE_ATTEMPTS,
      attest: RCAR_HANDSHAKE_ATTEMPTS,
      resource: 0,
    });
  });
  test("the key fetch's overall deadline (retry_timeout_secs) bounds the handshake restarts", async () => {
    const b = await broker({ faults: { transient401Attest: 1000 } });
    const started = Date.now();
    // Waits of 0.5-1 s against a 0.7 s budget: one or two handshakes, never five.
    const retry = { ...FAST, baseDelayMs: 1000, maxDelayMs: 1000, totalTimeoutMs: 700 };
    const e = await rejection<KbsError>(getKbsResource(cfg(b, { retry }), "default/key/rootfs"));
    expect(e.message).toMatch(/was refused in each of [1-2] handshakes?: HTTP 401/);
    expect(b.stats.auth).toBeLessThan(RCAR_HANDSHAKE_ATTEMPTS);
    expect(Date.now() - started).toBeLessThan(3000);
  });
  test("policy denial at /resource with a live session: final after one try, no new handshake", async () => {
    const b = await broker({ policy: DENY_ALL });
    const e = await rejection<KbsError>(getKbsResource(cfg(b), "default/key/rootfs"));
    expect(e.kbsType).toBe("PolicyDeny");
    expect(b.stats).toMatchObject({ auth: 1, attest: 1, resource: 1 });
  });
  test("a load balancer's affinity cookie is kept and sent back with the session cookie", async () => {
    const b = await broker({ faults: { affinityCookie: AFFINITY_COOKIE } });
    expect(await getKbsResource(cfg(b), "default/key/rootfs")).toEqual(KEY);
    expect(await getKbsResource(cfg(b), "default/key/delta")).toEqual(DELTA);
    // Without the affinity cookie /attest would reach a replica without the session (401).
    expect(b.stats).toMatchObject({ auth: 1, attest: 1, resource: 2, attestations: 1 });
  });
  test("both at once (the kbs-https VM scenario): restarted handshakes each get the affinity cookie anew", async () => {
    const b = await broker({ faults: { transient401Attest: 2, affinityCookie: AFFINITY_COOKIE } });
    expect(await getKbsResource(cfg(b), "default/key/rootfs")).toEqual(KEY);
    expect(await getKbsResource(cfg(b), "default/key/delta")).toEqual(DELTA);
    expect(b.stats).toMatchObject({ auth: 3, attest: 3, resource: 2, attestations: 1 });
  });
  test("the front really requires its cookie: only kbs-session-id sent back gets 'session not found'", async () => {
    const b = await broker({ faults: { affinityCookie: AFFINITY_COOKIE } });
    const auth = await fetch(`${b.url}/kbs/v0/auth`, {
      method: "POST",
      body: JSON.stringify({ version: "0.4.0", tee: "sample", "extra-params": "" }),
    });
    const cookies = auth.headers.getSetCookie();
    expect(cookies.some((c) => c.startsWith(`${AFFINITY_COOKIE}=replica-`))).toBe(true);
    const session = cookies.find((c) => c.startsWith("kbs-session-id="))!.split(";")[0]!;
    const res = await fetch(`${b.url}/kbs/v0/attest`, {
      method: "POST",
      headers: { cookie: session },
      body: "{}",
    });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { detail: string }).detail).toContain("session not found");
  });
  test("a slow /attest (cold verifier) passes within the request timeout, and times out below it", async () => {
    // Scaled down 100x from the VM scenario (40 s attest, 60 s timeout).
    const b = await broker({ faults: { slowAttestMs: 400 } });
    expect(
      await getKbsResource(cfg(b, { retry: { ...FAST, requestTimeoutMs: 600 } }), "default/key/rootfs"),
    ).toEqual(KEY);
    clearKbsSessions();
    const e = await rejection<KbsError>(
      getKbsResource(
        cfg(b, { retry: { ...FAST, attempts: 2, requestTimeoutMs: 150 } }),
        "default/key/rootfs",
      ),
    );
    expect(e.message).toContain(`attest request to ${b.url}/kbs/v0/attest gave up after 2 attempts`);
    expect(e.message).toContain("timed out");
  });
  test("the default request timeout outlasts a cold verifier's 40 s /attest (upstream's 60 s)", () => {
    expect(COLD_VERIFIER_ATTEST_MS).toBe(40_000);
    expect(KBS_RETRY.requestTimeoutMs).toBe(60_000);
    expect(KBS_RETRY.requestTimeoutMs).toBeGreaterThan(COLD_VERIFIER_ATTEST_MS * 1.25);
    // One slow attest fits the overall budget many times over.
    expect(KBS_RETRY.totalTimeoutMs).toBeGreaterThan(2 * KBS_RETRY.requestTimeoutMs);
  });
});
