/**
 * The clock check's decisions with injected clocks, network and setter (the host clock is never
 * set): a sane clock without NTP config costs no network; a clock before the build time or
 * configured servers lead to a sync; the setter gets the server's time; nothing here throws.
 */
import { describe, expect, test } from "bun:test";
import { startNtpServer } from "../../../vm-test/ntp/server.ts";
import { parseNtpServer } from "../../src/clock/servers.ts";
import type { SntpTime } from "../../src/clock/sntp.ts";
import {
  type ClockDeps,
  configuredServers,
  DEFAULT_NTP_SERVERS,
  ECS_PROBE_TIMEOUT_MS,
  PER_SERVER_TIMEOUT_MS,
  planClockSync,
  realClockDeps,
  SYNC_BUDGET_MS,
  syncClock,
} from "../../src/clock/sync.ts";

const BUILD = Date.UTC(2026, 5, 1);
const YEAR = 365 * 86_400_000;

interface Fake extends ClockDeps {
  calls: string[];
  set: number[];
}

/** Deps with a clock at `nowMs`; `answers` maps a host to its time (or an Error). */
function fake(
  nowMs: number,
  opts: { cmdline?: string; ecs?: boolean; answers?: Record<string, number | Error> } = {},
): Fake {
  let mono = 1000;
  const f: Fake = {
    calls: [],
    set: [],
    now: () => nowMs,
    monotonic: () => mono,
    cmdline: async () => opts.cmdline ?? "BOOT_IMAGE=/vmlinuz root=/dev/mapper/rootfs",
    ecs: async (timeoutMs) => {
      f.calls.push(`ecs ${timeoutMs}`);
      return opts.ecs ? ["ntp.cloud.aliyuncs.com", "ntp1.cloud.aliyuncs.com"] : undefined;
    },
    query: async (server, timeoutMs): Promise<SntpTime> => {
      f.calls.push(`query ${server.host}:${server.port} ${timeoutMs}`);
      mono += 40;
      const a = opts.answers?.[server.host];
      if (a === undefined) {
        mono += timeoutMs;
        throw new Error(`${server.host}: no answer within ${timeoutMs} ms`);
      }
      if (a instanceof Error) throw a;
      return { server: server.host, unixMs: a, receivedAt: mono, roundTripMs: 40, stratum: 2 };
    },
    setClock: async (ms) => {
      f.set.push(ms);
    },
    buildTimeMs: BUILD,
  };
  return f;
}

describe("planClockSync", () => {
  test("a clock after the build time with no servers: no sync", () => {
    expect(planClockSync(BUILD + YEAR, BUILD, [])).toEqual({ sync: false });
  });
  test("a clock before the build time: sync, naming both times", () => {
    const p = planClockSync(BUILD - 5 * YEAR, BUILD, []);
    expect(p.sync).toBe(true);
    if (p.sync)
      expect(p.reason).toMatch(
        /clock \(2021-.*\) is before this binary's build time \(2026-06-01T00:00:00Z\)/,
      );
  });
  test("configured servers: sync even with a sane clock", () => {
    expect(planClockSync(BUILD + YEAR, BUILD, [parseNtpServer("10.0.2.2")!]).sync).toBe(true);
  });
});

describe("syncClock", () => {
  test("sane clock, nothing configured: no network, no ECS probe, clock kept", async () => {
    const f = fake(BUILD + YEAR);
    const started = performance.now();
    expect(await syncClock([], f)).toEqual({ action: "kept" });
    expect(performance.now() - started).toBeLessThan(100);
    expect(f.calls).toEqual([]);
    expect(f.set).toEqual([]);
  });

  test("clock before the build time on ECS: Alibaba Cloud's servers, the setter gets their time", async () => {
    const truth = BUILD + 100 * 86_400_000;
    const f = fake(BUILD - 3 * YEAR, { ecs: true, answers: { "ntp1.cloud.aliyuncs.com": truth } });
    const out = await syncClock([], f);
    expect(f.calls).toEqual([
      `ecs ${ECS_PROBE_TIMEOUT_MS}`,
      `query ntp.cloud.aliyuncs.com:123 ${PER_SERVER_TIMEOUT_MS}`,
      `query ntp1.cloud.aliyuncs.com:123 ${PER_SERVER_TIMEOUT_MS}`,
    ]);
    expect(out).toMatchObject({ action: "synced", server: "ntp1.cloud.aliyuncs.com" });
    // The reply arrived at monotonic T; the setter runs at the same fake instant, so exactly `truth`.
    expect(f.set).toEqual([truth]);
  });

  test("clock before the build time, no ECS: the public defaults", async () => {
    const f = fake(BUILD - YEAR, { answers: { [DEFAULT_NTP_SERVERS[0]!]: BUILD + 5000 } });
    await syncClock([], f);
    expect(f.calls[0]).toBe(`ecs ${ECS_PROBE_TIMEOUT_MS}`);
    expect(f.calls[1]).toStartWith(`query ${DEFAULT_NTP_SERVERS[0]}:123`);
    expect(f.set).toEqual([BUILD + 5000]);
  });

  test("configured servers: command line first, then global.toml; no ECS probe", async () => {
    const f = fake(BUILD + YEAR, {
      cmdline: "quiet cryptpilot.ntp=10.0.2.2:1123,[fd00::1]:123 ro",
      answers: { "fd00::1": BUILD + YEAR + 60_000 },
    });
    const out = await syncClock(["ntp.example.org"], f);
    expect(f.calls.map((c) => c.split(" ")[1])).toEqual(["10.0.2.2:1123", "fd00::1:123"]);
    expect(out).toMatchObject({ action: "synced", stepMs: 60_000 });
    expect(f.set).toEqual([BUILD + YEAR + 60_000]);
  });

  test("a server within MIN_STEP_MS of the clock: no step", async () => {
    const f = fake(BUILD + YEAR, { answers: { "10.0.2.2": BUILD + YEAR + 300 } });
    expect(await syncClock(["10.0.2.2"], f)).toMatchObject({ action: "synced", stepMs: 0 });
    expect(f.set).toEqual([]);
  });

  test("an answer before the build time is refused and the next server asked", async () => {
    const f = fake(BUILD - YEAR, { answers: { a: Date.UTC(2000, 0, 1), b: BUILD + 1000 } });
    expect(await syncClock(["a", "b"], f)).toMatchObject({ action: "synced", server: "b" });
    expect(f.set).toEqual([BUILD + 1000]);
  });

  test("every server silent: bounded by the budget, clock set forward to the build time", async () => {
    const f = fake(BUILD - YEAR);
    const out = await syncClock(["a", "b", "c", "d", "e"], f);
    // 1 s each within a 3 s budget: the fourth server is not asked.
    expect(f.calls.length).toBeLessThanOrEqual(Math.ceil(SYNC_BUDGET_MS / PER_SERVER_TIMEOUT_MS));
    expect(out.action).toBe("floored");
    if (out.action === "floored") expect(out.why).toMatch(/a: no answer.*no time left for d/);
    expect(f.set).toEqual([BUILD]);
  });

  test("servers fail with a sane clock: a warning, the clock untouched", async () => {
    const f = fake(BUILD + YEAR, { answers: { a: new Error("a: kiss-o'-death DENY") } });
    const out = await syncClock(["a"], f);
    expect(out).toEqual({ action: "failed", why: "no NTP server gave a usable time: a: kiss-o'-death DENY" });
    expect(f.set).toEqual([]);
  });

  test("a setter that fails (no CAP_SYS_TIME) is a warning, not a failure", async () => {
    const f = fake(BUILD - YEAR, { answers: { a: BUILD } });
    f.setClock = async () => {
      throw new Error("clock_settime failed (errno 1, EPERM: needs CAP_SYS_TIME)");
    };
    expect(await syncClock(["a"], f)).toMatchObject({
      action: "failed",
      why: expect.stringMatching(/EPERM/),
    });
  });

  test("end to end with the real SNTP client and the test server; only the setter is faked", async () => {
    const server = await startNtpServer({ offsetMs: 2 * YEAR });
    try {
      const deps = { ...(await realClockDeps()), cmdline: async () => "", set: [] as number[] };
      deps.setClock = async (ms) => {
        deps.set.push(ms);
      };
      const out = await syncClock([`127.0.0.1:${server.port}`], deps);
      expect(out).toMatchObject({ action: "synced" });
      expect(Math.abs(deps.set[0]! - (Date.now() + 2 * YEAR))).toBeLessThan(2000);
    } finally {
      await server.stop();
    }
  });
});

describe("configuredServers", () => {
  test("bad command-line entries are skipped, duplicates dropped, at most MAX_NTP_SERVERS", () => {
    const s = configuredServers(["a", "a:123"], "cryptpilot.ntp=bad_host!,a,b:0,[::1]:99");
    expect(s).toEqual([
      { host: "a", port: 123 },
      { host: "::1", port: 99 },
    ]);
    const many = Array.from({ length: 12 }, (_, i) => `h${i}`);
    expect(configuredServers(many, "").length).toBe(8);
  });
});
