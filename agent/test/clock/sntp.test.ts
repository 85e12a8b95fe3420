/**
 * The SNTP client against the test server on 127.0.0.1 (vm-test/ntp/server.ts): a good answer is
 * taken, every bad one is refused naming what is wrong, and a silent or slow server costs no more
 * than the timeout.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createSocket } from "node:dgram";
import { type NtpTestServer, reply, startNtpServer } from "../../../vm-test/ntp/server.ts";
import { buildRequest, parseReply, querySntp } from "../../src/clock/sntp.ts";
import { bounded } from "../hostile/limits.ts";

let server: NtpTestServer;
beforeAll(async () => {
  server = await startNtpServer();
});
afterAll(() => server.stop());

const local = () => ({ host: "127.0.0.1", port: server.port });

async function rejectsWith(p: Promise<unknown>, words: RegExp): Promise<void> {
  await expect(p).rejects.toThrow(words);
}

describe("querySntp against the test server", () => {
  test("a good answer gives the server's time", async () => {
    server.mode = "good";
    const t = await querySntp(local(), 1000);
    expect(Math.abs(t.unixMs - Date.now())).toBeLessThan(2000);
    expect(t.stratum).toBe(2);
    expect(t.server).toBe(`127.0.0.1:${server.port}`);
  });

  for (const [mode, words] of [
    ["kod", /kiss-o'-death RATE/],
    ["unsynced", /stratum 16/],
    ["garbage", /20-byte reply/],
  ] as const) {
    test(`${mode}: refused at once, naming the field`, async () => {
      server.mode = mode;
      await bounded(() => rejectsWith(querySntp(local(), 2000), words), { ms: 1500, mib: 50 });
    });
  }

  test("wrong origin echo: dropped, and named when nothing better comes within the timeout", async () => {
    server.mode = "wrong-origin";
    await bounded(() => rejectsWith(querySntp(local(), 300), /origin timestamp does not echo/), {
      ms: 2000,
      mib: 50,
    });
  });

  test("no answer: gives up within the timeout", async () => {
    server.mode = "silent";
    const before = server.requests;
    await bounded(() => rejectsWith(querySntp(local(), 300), /no answer within 300 ms/), {
      ms: 2000,
      mib: 50,
    });
    expect(server.requests).toBe(before + 1);
  });

  test("replies from another port are ignored", async () => {
    // A forger on another port answers first and well: it must not be taken.
    const forger = createSocket("udp4");
    await new Promise<void>((r) => forger.bind(0, "127.0.0.1", () => r()));
    server.mode = "silent";
    const real = createSocket("udp4");
    await new Promise<void>((r) => real.bind(0, "127.0.0.1", () => r()));
    real.on("message", (msg, rinfo) => {
      forger.send(reply(new Uint8Array(msg), "good", Date.now())!, rinfo.port, rinfo.address);
    });
    try {
      await expect(querySntp({ host: "127.0.0.1", port: real.address().port }, 300)).rejects.toThrow(
        /no answer/,
      );
    } finally {
      forger.close();
      real.close();
    }
  });
});

describe("parseReply", () => {
  const nonce = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  const good = () => reply(buildRequest(nonce), "good", Date.UTC(2030, 0, 1))!;

  test("the request is a version 4 client packet carrying the nonce as transmit timestamp", () => {
    const req = buildRequest(nonce);
    expect(req.length).toBe(48);
    expect(req[0]).toBe(0x23);
    expect([...req.subarray(40)]).toEqual([...nonce]);
    expect(req.subarray(0, 40).some((b, i) => i > 0 && b !== 0)).toBe(false);
  });

  test("half the network delay is added", () => {
    const t = parseReply(good(), nonce, 100, 300, "s");
    expect(t.unixMs).toBe(Date.UTC(2030, 0, 1) + 100);
    expect(t.roundTripMs).toBe(200);
  });

  test("NTP era 1 (after 2036-02-07) is read as such", () => {
    const t = parseReply(reply(buildRequest(nonce), "good", Date.UTC(2040, 5, 1))!, nonce, 0, 0, "s");
    expect(t.unixMs).toBe(Date.UTC(2040, 5, 1));
  });

  const cases: [string, (p: Uint8Array) => void, RegExp][] = [
    ["client mode", (p) => (p[0] = (p[0]! & ~7) | 3), /mode 3/],
    ["version 7", (p) => (p[0] = (p[0]! & ~0x38) | (7 << 3)), /version 7/],
    ["leap 3", (p) => (p[0] = p[0]! | 0xc0), /leap indicator 3/],
    ["zero transmit", (p) => p.fill(0, 40, 48), /zero transmit/],
    ["zero receive", (p) => p.fill(0, 32, 40), /zero receive/],
    ["origin off by one bit", (p) => (p[24] = p[24]! ^ 1), /origin timestamp/],
    ["held longer than the round trip", (p) => (p[40] = p[40]! + 1), /held the request/],
    [
      "kiss code with control bytes",
      (p) => {
        p[1] = 0;
        p.set([0x1b, 0x5b, 0x32, 0x4a], 12);
      },
      /kiss-o'-death \\x1b\[2J/,
    ],
  ];
  for (const [name, mutate, words] of cases) {
    test(`refused: ${name}`, () => {
      const p = good();
      mutate(p);
      expect(() => parseReply(p, nonce, 0, 10, "s")).toThrow(words);
    });
  }
});
