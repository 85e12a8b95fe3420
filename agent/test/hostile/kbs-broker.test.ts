/**
 * Issue #15, broker behaviour: what the handshake restarts, the cookie jar and the clock probe add
 * must stay bounded when the host (who owns the network) plays the broker or the load balancer.
 * Each case is a real local server on 127.0.0.1 doing one thing wrong.
 */
import { describe, expect, test } from "bun:test";
import { connect, createServer, type Socket } from "node:net";
import { startBroker } from "../../../vm-test/kbs/broker.ts";
import { makeDatedPki } from "../../../vm-test/kbs/tls.ts";
import { clearKbsSessions, getKbsResource, RCAR_HANDSHAKE_ATTEMPTS } from "../../src/kbs/client.ts";
import type { KbsError } from "../../src/kbs/errors.ts";
import { COOKIE_JAR_MAX_COOKIES, COOKIE_MAX_BYTES } from "../../src/net/cookies.ts";
import { FAST_RETRY, rejection, stopsAfterEach } from "../../testkit/harness.ts";
import { bounded } from "./limits.ts";

const CASE = { ms: 5_000, mib: 200 };
const KEY = new TextEncoder().encode("k");

const stops = stopsAfterEach(clearKbsSessions);

describe("hostile broker or load balancer (#15)", () => {
  test("a Set-Cookie flood: the jar keeps at most its cap, the Cookie header sent back stays bounded", async () => {
    const b = await startBroker({ resources: { "default/key/rootfs": KEY } });
    stops.push(() => b.stop());
    let largestCookieHeader = 0;
    let sentCookies = 0;
    // A front that adds 100 cookies of ~200 bytes to every reply and forwards the rest (Bun's
    // fetch itself refuses reply headers of megabytes as a malformed response).
    const junk = Array.from({ length: 100 }, (_, i) => `junk${i}=${"x".repeat(200)}; Path=/`);
    const front = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(req) {
        const cookie = req.headers.get("cookie") ?? "";
        largestCookieHeader = Math.max(largestCookieHeader, cookie.length);
        sentCookies = Math.max(sentCookies, cookie ? cookie.split("; ").length : 0);
        const url = new URL(req.url);
        const res = await fetch(`${b.url}${url.pathname}`, {
          method: req.method,
          headers: req.headers,
          body: req.method === "GET" ? undefined : await req.text(),
        });
        const headers = new Headers(res.headers);
        headers.delete("content-length");
        for (const c of junk) headers.append("set-cookie", c);
        return new Response(await res.arrayBuffer(), { status: res.status, headers });
      },
    });
    stops.push(() => front.stop(true));
    const url = `http://127.0.0.1:${front.port}`;
    const key = await bounded(
      () => getKbsResource({ url, tee: "sample", retry: FAST_RETRY }, "default/key/rootfs"),
      CASE,
    );
    expect(key).toEqual(KEY);
    expect(largestCookieHeader).toBeGreaterThan(0);
    expect(largestCookieHeader).toBeLessThanOrEqual(COOKIE_JAR_MAX_COOKIES * (COOKIE_MAX_BYTES + 2));
    // The session cookie came first and was kept; the jar filled up to its cap, no further.
    expect(sentCookies).toBeLessThanOrEqual(COOKIE_JAR_MAX_COOKIES);
    expect(sentCookies).toBeGreaterThan(COOKIE_JAR_MAX_COOKIES / 2);
  });

  test(`401 at /attest forever, each slow: at most ${RCAR_HANDSHAKE_ATTEMPTS} handshakes inside the overall budget`, async () => {
    const b = await startBroker({ faults: { transient401Attest: 1_000_000, slowAttestMs: 300 } });
    stops.push(() => b.stop());
    const retry = { ...FAST_RETRY, baseDelayMs: 200, maxDelayMs: 200, totalTimeoutMs: 1_500 };
    const e = await bounded(
      () => rejection<KbsError>(getKbsResource({ url: b.url, tee: "sample", retry }, "default/key/rootfs")),
      CASE,
    );
    // The budget ends the loop: refused again, or the last attempt gets only what time is left.
    expect(e.message).toMatch(
      /attest request to .* (was refused in each of \d handshakes?: HTTP 401|gave up)/,
    );
    expect(b.stats.auth).toBeLessThanOrEqual(RCAR_HANDSHAKE_ATTEMPTS);
  });

  test("expired certificate, then a peer that stalls the second (date-reading) handshake: bounded, still names the clock", async () => {
    const pki = makeDatedPki({ notBefore: new Date("2020-01-01"), notAfter: new Date("2021-01-01") });
    const tls = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: pki.certPem, key: pki.keyPem },
      fetch: () => new Response("{}"),
    });
    stops.push(() => tls.stop(true));
    // A TCP front: the first connection reaches the TLS server, later ones are accepted and left hanging.
    const held: Socket[] = [];
    let connections = 0;
    const front = createServer((sock) => {
      if (connections++ > 0) {
        held.push(sock);
        return;
      }
      const up = connect(tls.port!, "127.0.0.1");
      sock.pipe(up).pipe(sock);
      sock.on("error", () => up.destroy());
      up.on("error", () => sock.destroy());
    });
    await new Promise<void>((r) => front.listen(0, "127.0.0.1", r));
    stops.push(() => {
      for (const s of held) s.destroy();
      return new Promise((r) => front.close(r));
    });
    const port = (front.address() as { port: number }).port;
    const retry = { ...FAST_RETRY, requestTimeoutMs: 1_000 };
    const e = await bounded(
      () =>
        rejection<KbsError>(
          getKbsResource({ url: `https://127.0.0.1:${port}`, tee: "sample", retry, ca: pki.caPem }, "x/y/z"),
        ),
      CASE,
    );
    expect(e.message).toContain("TLS certificate not valid at this machine's time (CERT_HAS_EXPIRED)");
    expect(e.message).toContain("the guest clock says");
    expect(e.message).toContain("a certificate in the broker's chain is not valid at that time");
    expect(e.hint).not.toContain("kbs_root_cert");
    expect(connections).toBe(2);
  });
});
