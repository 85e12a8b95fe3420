/**
 * The ECS user-data source against vm-test/aliyun's metadata server: IMDSv2 token then
 * GET /latest/user-data, 404 as "none", and the time bounds: no service costs at most
 * IMDS_PROBE_MS, a service that accepts but hangs at most USER_DATA_RETRY's total.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createServer } from "node:net";
import type { AliyunWorld } from "../../../vm-test/aliyun/servers.ts";
import { USER_DATA_MAX_BYTES, USER_DATA_PATH } from "../../src/aliyun/imds.ts";
import { aliyunUserData, IMDS_PROBE_MS, USER_DATA_RETRY } from "../../src/config/sources/index.ts";
import { makeIssuer, SETUP_TIMEOUT_MS, startWorld } from "../aliyun/world.ts";

const BUNDLE = "#cryptpilot-fde-config\n[fde.rootfs]\n";
/** Slack for a loaded 2-core CI box on top of a bound. */
const SLACK_MS = 1500;

let world: AliyunWorld;
beforeAll(async () => {
  world = await startWorld(await makeIssuer(), { imdsRequireV2: true, slowMs: 10_000 });
}, SETUP_TIMEOUT_MS);
afterAll(() => world?.stop());

const timed = async <T>(fn: () => Promise<T>) => {
  const start = performance.now();
  const value = await fn().catch((e: unknown) => e);
  return { value, ms: performance.now() - start };
};

describe("ECS user data through IMDS", () => {
  test("IMDSv2: a session token first, then the user data with it (a hardened instance refuses v1)", async () => {
    world.setUserData(BUNDLE);
    world.requests.length = 0;
    expect(await aliyunUserData({ endpoint: world.url("imds") }).read()).toEqual({ text: BUNDLE });
    const imds = world.requests.filter((r) => r.service === "imds");
    expect(imds.map((r) => `${r.action} ${r.status}`)).toEqual([
      "PUT /latest/api/token 200",
      `GET ${USER_DATA_PATH} 200`,
    ]);
    expect(imds[1]!.headers["x-aliyun-ecs-metadata-token"]).toBeTruthy();
  });

  test("no user data set (HTTP 404): absent, not an error", async () => {
    world.setUserData(undefined);
    const r = await aliyunUserData({ endpoint: world.url("imds") }).read();
    expect(r).toEqual({ absent: expect.stringContaining("has no user data") });
  });

  test("user data over the size limit is refused", async () => {
    world.setUserData(`${BUNDLE}#${"x".repeat(USER_DATA_MAX_BYTES)}\n`);
    await expect(aliyunUserData({ endpoint: world.url("imds") }).read()).rejects.toThrow(
      /limit for user data/,
    );
    world.setUserData(undefined);
  });

  test("no metadata service (port closed): absent, quickly", async () => {
    const closed = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const port = (s.address() as { port: number }).port;
        s.close(() => resolve(port));
      });
    });
    const { value, ms } = await timed(() =>
      aliyunUserData({ endpoint: `http://127.0.0.1:${closed}` }).read(),
    );
    expect(value).toEqual({ absent: expect.stringContaining("no instance metadata service") });
    expect(ms).toBeLessThan(IMDS_PROBE_MS + SLACK_MS);
  });

  // A listener whose accept queue is full: the kernel drops further SYNs, so a connect hangs as it
  // does toward an address nothing answers for. Bun accepts every connection itself, hence python.
  const BLACK_HOLE = `
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)
port = s.getsockname()[1]
held = []
for _ in range(3):
    c = socket.socket(); c.setblocking(False)
    try: c.connect(("127.0.0.1", port))
    except BlockingIOError: pass
    held.append(c)
time.sleep(0.2)
print(port, flush=True)
time.sleep(60)
`;

  test.skipIf(!Bun.which("python3"))(
    "a metadata address nothing answers: the boot waits at most IMDS_PROBE_MS (1 s) more",
    async () => {
      const hole = Bun.spawn(["python3", "-c", BLACK_HOLE], { stdout: "pipe" });
      try {
        const reader = hole.stdout.getReader();
        const port = Number(new TextDecoder().decode((await reader.read()).value).trim());
        const { value, ms } = await timed(() =>
          aliyunUserData({ endpoint: `http://127.0.0.1:${port}` }).read(),
        );
        expect(value).toEqual({ absent: expect.stringContaining(`no answer within ${IMDS_PROBE_MS} ms`) });
        expect(IMDS_PROBE_MS).toBeLessThanOrEqual(1000);
        expect(ms).toBeGreaterThanOrEqual(IMDS_PROBE_MS - 50);
        expect(ms).toBeLessThan(IMDS_PROBE_MS + SLACK_MS);
      } finally {
        hole.kill();
      }
    },
  );

  test(
    "a service that accepts but never answers: an error within USER_DATA_RETRY's total time",
    async () => {
      world.setFault("imds", { mode: "slow" });
      try {
        const { value, ms } = await timed(() => aliyunUserData({ endpoint: world.url("imds") }).read());
        expect(value).toBeInstanceOf(Error);
        expect(String(value)).toMatch(/api\/token|user-data/);
        expect(ms).toBeLessThan(USER_DATA_RETRY.totalTimeoutMs + SLACK_MS);
      } finally {
        world.setFault("imds", undefined);
      }
    },
    USER_DATA_RETRY.totalTimeoutMs + 10_000,
  );
});
