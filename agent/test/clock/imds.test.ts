/**
 * The ECS check (a TCP connection to the metadata service, as upstream): true when something
 * accepts, false when refused, and false within the timeout when nothing answers at all, so a VM
 * without a metadata service waits at most ECS_PROBE_TIMEOUT_MS.
 */
import { expect, test } from "bun:test";
import { createServer } from "node:net";
import { imdsAnswers } from "../../src/aliyun/imds.ts";
import { ECS_PROBE_TIMEOUT_MS } from "../../src/clock/sync.ts";

test("a listening metadata service: true", async () => {
  const server = createServer((c) => c.end());
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const { port } = server.address() as { port: number };
  try {
    expect(await imdsAnswers(1000, `http://127.0.0.1:${port}`)).toBe(true);
  } finally {
    server.close();
  }
});

test("a refused connection: false, at once", async () => {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const { port } = server.address() as { port: number };
  server.close();
  const started = performance.now();
  expect(await imdsAnswers(1000, `http://127.0.0.1:${port}`)).toBe(false);
  expect(performance.now() - started).toBeLessThan(1000);
});

// Where TEST-NET-1 is dropped this waits for the timer; where it is refused or unroutable (as on
// the CI box, whose gateway is in it) it returns at once: either way within the bound.
test("an address nobody serves (TEST-NET-1): false within the probe timeout", async () => {
  const started = performance.now();
  expect(await imdsAnswers(ECS_PROBE_TIMEOUT_MS, "http://192.0.2.1")).toBe(false);
  expect(performance.now() - started).toBeLessThan(ECS_PROBE_TIMEOUT_MS + 1500);
});
