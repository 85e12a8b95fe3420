/**
 * The host owns the network (issue #14, gap 5): replies from a key broker, KMS, STS or the metadata
 * service are hostile until checked. Each case is a real local server (127.0.0.1 only) doing one
 * thing wrong; the client must stop with an error naming the provider, step and URL, within
 * bounded time and memory, retrying only what may clear up.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createNetServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import { type Broker, startBroker } from "../../../vm-test/kbs/broker.ts";
import { AliyunError } from "../../src/aliyun/errors.ts";
import { Imds } from "../../src/aliyun/imds.ts";
import { assumeRoleWithOidc } from "../../src/aliyun/sts.ts";
import { EncryptSchema, type KbsConfig } from "../../src/config/providers/index.ts";
import { formatError, KeyProviderError } from "../../src/errors.ts";
import { clearKbsSessions, getKbsResource } from "../../src/kbs/client.ts";
import { KBS_RESOURCE_REPLY_MAX_BYTES } from "../../src/kbs/http.ts";
import { CONTROL_REPLY_MAX_BYTES } from "../../src/net/http.ts";
import { create as createKbs } from "../../src/providers/kbs.ts";
import { MAX_KEY_BYTES } from "../../src/providers/key-size.ts";
import { FAST_RETRY, stopsAfterEach } from "../../testkit/harness.ts";
import { bounded } from "./limits.ts";

/** Generous: a crafted case must end well inside this on a loaded 2-core box. */
const CASE = { ms: 5_000, mib: 200 };

const stops = stopsAfterEach(clearKbsSessions);

/** A Bun server on 127.0.0.1 counting its requests. */
function serve(fetch: (req: Request) => Response | Promise<Response>, tls?: { cert: string; key: string }) {
  const hits: string[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    ...(tls ? { tls } : {}),
    fetch(req) {
      hits.push(new URL(req.url).pathname);
      return fetch(req);
    },
  });
  stops.push(() => server.stop(true));
  return { url: `${tls ? "https" : "http"}://127.0.0.1:${server.port}`, hits };
}

/** A node:http server (writes headers exactly as given, e.g. a lying Content-Length). */
async function nodeServe(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server: Server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  stops.push(() => {
    server.closeAllConnections();
    server.close();
  });
  const { port } = server.address() as { port: number };
  return `http://127.0.0.1:${port}`;
}

/** A raw TCP server on 127.0.0.1 counting its connections. */
async function tcpServe(onConnection: (c: Socket) => void) {
  let count = 0;
  const server = createNetServer((c) => {
    count++;
    onConnection(c);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  stops.push(() => server.close());
  return { port: (server.address() as { port: number }).port, connections: () => count };
}

/** A body of `total` bytes made 64 KiB at a time as the client pulls: the server never holds it. */
function endless(total: number): ReadableStream<Uint8Array> {
  const chunk = new Uint8Array(64 * 1024).fill(0x7b);
  let sent = 0;
  return new ReadableStream({
    pull(c) {
      if (sent >= total) return c.close();
      sent += chunk.length;
      c.enqueue(chunk);
    },
  });
}

/** One byte every `everyMs`, forever: headers arrive at once, the body never completes. */
function trickle(everyMs: number): ReadableStream<Uint8Array> {
  return new ReadableStream({
    async pull(c) {
      await Bun.sleep(everyMs);
      c.enqueue(new Uint8Array([0x20]));
    },
  });
}

async function failure(p: Promise<unknown>): Promise<Error> {
  const err = await p.then(
    () => undefined,
    (e) => e,
  );
  expect(err).toBeInstanceOf(Error);
  return err as Error;
}

const kbs = (url: string, retry = FAST_RETRY) =>
  getKbsResource({ url, tee: "sample", retry }, "default/key/rootfs");

describe("KBS replies are capped", () => {
  test("a Content-Length above the cap is refused before the body is read, not retried", async () => {
    let requests = 0;
    const url = await nodeServe((_req, res) => {
      requests++;
      // Declares 64 MiB, sends 1 KiB and stalls: reading would wait for the timeout.
      res.writeHead(200, { "content-type": "application/json", "content-length": String(64 << 20) });
      res.write("x".repeat(1024));
    });
    const e = await bounded(() => failure(kbs(url, { ...FAST_RETRY, requestTimeoutMs: 4_000 })), {
      ms: 3_000,
      mib: 50,
    });
    expect(e).toBeInstanceOf(KeyProviderError);
    expect(e.message).toContain(
      `kbs key provider: auth request to ${url}/kbs/v0/auth could not be completed`,
    );
    expect(e.message).toContain(`declares ${64 << 20} bytes (Content-Length), more than the 1 MiB`);
    expect(requests).toBe(1);
  });

  test("a 1 GiB chunked /auth body is cut at 1 MiB, never buffered whole", async () => {
    const s = serve(
      () => new Response(endless(1 << 30), { headers: { "content-type": "application/json" } }),
    );
    const e = await bounded(() => failure(kbs(s.url)), CASE);
    expect(e.message).toContain(`auth request to ${s.url}/kbs/v0/auth could not be completed`);
    expect(e.message).toContain(`exceeds the ${CONTROL_REPLY_MAX_BYTES / (1 << 20)} MiB accepted here`);
    expect(s.hits.length).toBe(1);
  });

  test("a /resource reply larger than a key's JWE is refused; a key over MAX_KEY_BYTES is refused; MAX_KEY_BYTES passes", async () => {
    const big = new Uint8Array(4 * MAX_KEY_BYTES).fill(1);
    const over = new Uint8Array(MAX_KEY_BYTES + 1).fill(2);
    const max = new Uint8Array(MAX_KEY_BYTES).fill(3);
    const b: Broker = await startBroker({
      resources: { "default/key/big": big, "default/key/over": over, "default/key/max": max },
    });
    stops.push(() => b.stop());
    const provider = (tag: string) =>
      createKbs(
        v.parse(EncryptSchema, {
          kbs: { kbs_url: b.url, key_uri: `kbs:///default/key/${tag}`, tee: "sample", retry_attempts: 2 },
        }) as KbsConfig,
        { volume: "rootfs", configDir: "/etc/cryptpilot", freshKey: "never" },
      );
    const e1 = await failure(provider("big").getKey());
    expect(e1.message).toContain(
      `resource request to ${b.url}/kbs/v0/resource/default/key/big could not be completed`,
    );
    expect(e1.message).toContain(`more than the ${KBS_RESOURCE_REPLY_MAX_BYTES} bytes accepted here`);
    const e2 = await failure(provider("over").getKey());
    expect(e2.message).toContain(`is ${MAX_KEY_BYTES + 1} bytes, more than the 64 KiB a key may have`);
    expect(await provider("max").getKey()).toEqual(max);
  });
});

describe("KBS error text is the peer's: printable and short", () => {
  test("control characters in a refusal (terminal escapes, forged log lines) are neutralised", async () => {
    const detail = `\x1b[2J\nkbs: attested to https://fake as tdx${"A".repeat(5000)}`;
    const s = serve(() => Response.json({ type: "x/errors/\x1b[31mPolicyDeny", detail }, { status: 401 }));
    const e = await bounded(() => failure(kbs(s.url)), CASE);
    expect(e.message).toContain(
      "HTTP 401 \\x1b[31mPolicyDeny: \\x1b[2J\\x0akbs: attested to https://fake as tdx",
    );
    expect(e.message).not.toMatch(/\p{Cc}/u);
    expect(e.message.length).toBeLessThan(1000);
  });
});

describe("KBS timeouts cover the body", () => {
  test("a trickling body is retried, then reported with provider, step, URL and the timeout", async () => {
    const s = serve(() => new Response(trickle(100), { headers: { "content-type": "application/json" } }));
    const retry = { ...FAST_RETRY, attempts: 2, requestTimeoutMs: 500 };
    const e = await bounded(() => failure(kbs(s.url, retry)), CASE);
    expect(e.message).toBe(
      `kbs key provider: auth request to ${s.url}/kbs/v0/auth gave up after 2 attempts: could not be completed: timed out: the reply body did not arrive within 500 ms`,
    );
    expect(s.hits.length).toBe(2);
  });
});

describe("KBS: what retrying cannot fix is final", () => {
  test("a certificate for another host name: final at once, hint names kbs_root_cert and the clock", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hostile-tls-"));
    const r = Bun.spawnSync(
      [
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-subj",
        "/CN=kbs.other.example",
        "-addext",
        "subjectAltName=DNS:kbs.other.example",
      ],
      { cwd: dir, stdout: "ignore", stderr: "pipe" },
    );
    expect(r.exitCode).toBe(0);
    const cert = readFileSync(join(dir, "cert.pem"), "utf8");
    const s = serve(() => new Response("{}"), { cert, key: readFileSync(join(dir, "key.pem"), "utf8") });
    let sent = 0;
    const e = await bounded(
      () =>
        failure(
          getKbsResource(
            { url: s.url, tee: "sample", ca: cert, retry: FAST_RETRY, onRequest: () => sent++ },
            "default/key/rootfs",
          ),
        ),
      CASE,
    );
    expect(e.message).toContain(
      `auth request to ${s.url}/kbs/v0/auth could not be completed: TLS certificate not trusted`,
    );
    expect(e.message).toMatch(/ALTNAME|HOSTNAME/);
    expect(formatError(e)).toContain("kbs_root_cert");
    expect(formatError(e)).toContain("clock");
    expect(sent).toBe(1);
  });

  test("garbage instead of a TLS handshake is final; a reset during the handshake is retried", async () => {
    const garbage = await tcpServe((c) => c.once("data", () => c.end("HTTP/1.1 400 Bad Request\r\n\r\n")));
    const reset = await tcpServe((c) => c.destroy());
    const e1 = await bounded(() => failure(kbs(`https://127.0.0.1:${garbage.port}`)), CASE);
    expect(e1.message).toContain("could not be completed: TLS handshake failed (EPROTO)");
    expect(formatError(e1)).toContain("speak TLS on this port");
    expect(garbage.connections()).toBe(1);
    const e2 = await bounded(() => failure(kbs(`https://127.0.0.1:${reset.port}`)), CASE);
    expect(e2.message).toContain(
      "gave up after 3 attempts: could not be completed: connection reset by the peer",
    );
    expect(reset.connections()).toBe(3);
  });

  test("a redirect is refused, naming the Location; not followed, not retried", async () => {
    const elsewhere = serve(() => new Response("{}"));
    const s = serve(
      () => new Response(null, { status: 307, headers: { location: `${elsewhere.url}/kbs/v0/auth` } }),
    );
    const e = await bounded(() => failure(kbs(s.url)), CASE);
    expect(e.message).toContain(
      `auth request to ${s.url}/kbs/v0/auth could not be completed: was redirected (HTTP 307) to ${elsewhere.url}/kbs/v0/auth`,
    );
    expect(formatError(e)).toContain("a key broker must be addressed directly");
    expect(formatError(e)).not.toContain("attestation");
    expect(s.hits.length).toBe(1);
    expect(elsewhere.hits.length).toBe(0);
  });
});

describe("Alibaba Cloud endpoints get the same bounds", () => {
  const ALIYUN = {
    attempts: 2,
    baseDelayMs: 20,
    maxDelayMs: 50,
    requestTimeoutMs: 500,
    totalTimeoutMs: 10_000,
  };

  test("STS: the service's Code and Message reach the message printable and short", async () => {
    const s = serve(() =>
      Response.json(
        { Code: "Denied\x1b[31m", Message: `evil\nkms: forged line${"B".repeat(5000)}`, RequestId: "r\r1" },
        { status: 400 },
      ),
    );
    const e = await bounded(
      () =>
        failure(
          assumeRoleWithOidc({
            endpoint: `${s.url}/`,
            roleArn: "r",
            oidcProviderArn: "p",
            oidcToken: "t",
            retry: ALIYUN,
          }),
        ),
      CASE,
    );
    expect(e.message).toContain("HTTP 400 Denied\\x1b[31m: evil\\x0akms: forged line");
    expect(e.message).toContain("(request id r\\x0d1)");
    expect(e.message).not.toMatch(/\p{Cc}/u);
    expect(e.message.length).toBeLessThan(1000);
  });

  test("IMDS: a 1 GiB reply is cut at 1 MiB, final", async () => {
    const s = serve((req) => (req.method === "PUT" ? new Response("token") : new Response(endless(1 << 30))));
    const e = await bounded(() => failure(new Imds(s.url, ALIYUN).regionId()), CASE);
    expect(e).toBeInstanceOf(AliyunError);
    expect(e.message).toBe(
      `GET /latest/meta-data/region-id at ${s.url}: the reply body exceeds the 1 MiB accepted here`,
    );
    expect(s.hits.filter((p) => p.endsWith("region-id")).length).toBe(1);
  });

  test("IMDS: a trickling body is retried, then named", async () => {
    const s = serve((req) => (req.method === "PUT" ? new Response("token") : new Response(trickle(100))));
    const e = await bounded(() => failure(new Imds(s.url, ALIYUN).regionId()), CASE);
    expect(e.message).toBe(
      `GET /latest/meta-data/region-id at ${s.url}: timed out: the reply body did not arrive within 500 ms (gave up after 2 attempts)`,
    );
    expect(s.hits.filter((p) => p.endsWith("region-id")).length).toBe(2);
  });

  test("IMDS: a redirect is refused, naming the Location", async () => {
    const s = serve((req) =>
      req.method === "PUT"
        ? new Response("token")
        : new Response(null, { status: 302, headers: { location: "http://attacker.example/x" } }),
    );
    const e = await bounded(() => failure(new Imds(s.url, ALIYUN).regionId()), CASE);
    expect(e.message).toBe(
      `GET /latest/meta-data/region-id at ${s.url}: was redirected (HTTP 302) to http://attacker.example/x`,
    );
    expect(s.hits.filter((p) => p.endsWith("region-id")).length).toBe(1);
  });
});
