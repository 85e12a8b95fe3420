/**
 * A hostile network against the SNTP client: every mutated or random reply is refused with an
 * SntpError (never another exception, never accepted without the nonce echo), and a flood of
 * large datagrams from the server and from forgers ends within the query timeout without memory
 * growth.
 */
import { describe, expect, test } from "bun:test";
import { createSocket } from "node:dgram";
import { reply } from "../../../vm-test/ntp/server.ts";
import { buildRequest, parseReply, querySntp, SntpError } from "../../src/clock/sntp.ts";
import { bounded } from "./limits.ts";

/** xorshift32: the same cases on every run. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

describe("parseReply fuzz", () => {
  test("20000 mutated and random replies: accepted only with the nonce echoed, else SntpError", async () => {
    const next = rng(0x5eed);
    const nonce = new Uint8Array([9, 8, 7, 6, 5, 4, 3, 2]);
    const base = reply(buildRequest(nonce), "good", Date.UTC(2031, 0, 1))!;
    await bounded(
      async () => {
        for (let i = 0; i < 20_000; i++) {
          let p: Uint8Array;
          if (i % 4 === 0) {
            p = new Uint8Array(Math.floor(next() * 100));
            for (let j = 0; j < p.length; j++) p[j] = Math.floor(next() * 256);
          } else {
            p = base.slice();
            for (let k = 1 + Math.floor(next() * 4); k > 0; k--)
              p[Math.floor(next() * 48)] = Math.floor(next() * 256);
          }
          try {
            const t = parseReply(p, nonce, 0, 50, "s");
            expect([...p.subarray(24, 32)]).toEqual([...nonce]);
            expect(Number.isFinite(t.unixMs)).toBe(true);
          } catch (e) {
            if (!(e instanceof SntpError)) throw e;
          }
        }
      },
      { ms: 5000, mib: 100 },
    );
  });
});

describe("a flood", () => {
  test("60 KiB garbage datagrams from forgers, then a reply with the wrong origin: bounded, refused", async () => {
    const server = createSocket("udp4");
    const forger = createSocket("udp4");
    await new Promise<void>((r) => server.bind(0, "127.0.0.1", () => r()));
    await new Promise<void>((r) => forger.bind(0, "127.0.0.1", () => r()));
    const big = new Uint8Array(60 * 1024).fill(0xa5);
    server.on("message", (msg, rinfo) => {
      for (let i = 0; i < 300; i++) forger.send(big, rinfo.port, rinfo.address);
      const bad = reply(new Uint8Array(msg), "wrong-origin", Date.now())!;
      for (let i = 0; i < 300; i++) server.send(bad, rinfo.port, rinfo.address);
    });
    try {
      await bounded(
        async () => {
          await expect(querySntp({ host: "127.0.0.1", port: server.address().port }, 500)).rejects.toThrow(
            /origin timestamp does not echo/,
          );
        },
        { ms: 3000, mib: 200 },
      );
    } finally {
      server.close();
      forger.close();
    }
  });
});
