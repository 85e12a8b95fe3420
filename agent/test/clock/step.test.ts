/**
 * The before-sysroot stage checks the clock before its first key fetch, and only when there is a
 * key to fetch; with a sane clock and no NTP config the check costs no network and well under 0.1 s.
 */
import { describe, expect, test } from "bun:test";
import { beforeSysrootSteps } from "../../src/boot/before-sysroot.ts";
import { realClockDeps, syncClock } from "../../src/clock/sync.ts";
import type { FdeConfig } from "../../src/config/index.ts";

const CLOCK = "checking the clock before the first key fetch";

const cfg = (deltaLocation: "disk" | "ram", encrypted: boolean): FdeConfig => ({
  rootfs: {
    deltaLocation,
    deltaBackend: "dm-snapshot",
    ...(encrypted ? { encrypt: { type: "exec", command: "cat", args: [] } } : {}),
  } as FdeConfig["rootfs"],
  delta: {
    integrity: false,
    encrypt: { type: "exec", command: "cat", args: [] } as unknown as FdeConfig["delta"]["encrypt"],
  },
});

describe("the clock step", () => {
  for (const [where, encrypted] of [
    ["disk", true],
    ["disk", false],
    ["ram", true],
  ] as const) {
    test(`comes before the first unlock (delta ${where}, rootfs ${encrypted ? "" : "not "}encrypted)`, () => {
      const titles = beforeSysrootSteps(cfg(where, encrypted)).map((s) => s.title);
      const firstUnlock = titles.findIndex((t) => t.startsWith("unlocking"));
      expect(firstUnlock).toBeGreaterThan(0);
      expect(titles.indexOf(CLOCK)).toBeGreaterThan(-1);
      expect(titles.indexOf(CLOCK)).toBeLessThan(firstUnlock);
    });
  }

  test("no key fetched (delta in ram, rootfs not encrypted): no clock step", () => {
    expect(beforeSysrootSteps(cfg("ram", false)).map((s) => s.title)).not.toContain(CLOCK);
  });

  test("sane clock, no NTP config, real deps: no network, under 0.1 s", async () => {
    const deps = await realClockDeps();
    const network: string[] = [];
    deps.ecs = async () => {
      network.push("ecs");
      return undefined;
    };
    deps.query = async (s) => {
      network.push(s.host);
      throw new Error("no network in this test");
    };
    deps.setClock = async () => {
      network.push("set");
    };
    deps.cmdline = async () => "BOOT_IMAGE=/vmlinuz root=/dev/mapper/rootfs ro";
    const started = performance.now();
    expect(await syncClock([], deps)).toEqual({ action: "kept" });
    expect(performance.now() - started).toBeLessThan(100);
    expect(network).toEqual([]);
  });
});
